"""The service's tests run a real ControlPlane in the lifecycle tests' world, and a real
``tidectl serve`` against the local EC2 of ``tests/fakes/aws_env.py``."""

from tests.console.lifecycle.conftest import clock, world
from tests.fakes.aws_env import aws_on_loopback, ec2, ec2_proxy, moto_server

__all__ = ["aws_on_loopback", "clock", "ec2", "ec2_proxy", "moto_server", "world"]  # fixtures
