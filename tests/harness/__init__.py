"""Test harnesses that start real services (OpenSSH ``sshd`` hosts, ...) for integration tests."""
