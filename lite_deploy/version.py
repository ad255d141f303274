"""The version of lite-deploy (setup.cfg reads it from here)."""

__version__ = "0.1.0"
