"""The ``[roles]`` table the tests' configs add: the made-up people their calls name (and
root, which runs the suite and Slurm's programs) are admins, so a test about something else is
not refused by the role check (tests/console/control/test_roles.py tests that)."""

TEST_ROLES = '[roles]\nadmin = ["ana", "bo", "root"]\n'
