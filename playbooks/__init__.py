"""Playbooks: scripted bursts and drains over ``ControlPlane``."""
