"""Checks on a plugin's input and output."""

from brickwork.guards.contract import (
    InputContractGuard,
    OutputContractGuard,
    describe_validation_error,
)

__all__ = ["InputContractGuard", "OutputContractGuard", "describe_validation_error"]
