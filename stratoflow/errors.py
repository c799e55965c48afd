"""Errors shared by every layer.

A ``TemplateError`` carries one ``Issue`` per fault, each naming the dotted TOSCA path of
the field at fault, so a user sees every problem at once and knows where to look.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Issue:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class StratoflowError(Exception):
    """Base class of every error Stratoflow raises on purpose."""


class TemplateError(StratoflowError):
    """Invalid or hostile input: a template, its inputs, a policy or site file."""

    def __init__(self, issues: list[Issue] | Issue | str):
        if isinstance(issues, str):
            issues = [Issue("", issues)]
        elif isinstance(issues, Issue):
            issues = [issues]
        self.issues: list[Issue] = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class ConfigError(StratoflowError, ValueError):
    """A setting (an environment variable, a configuration file) has a value we cannot use."""


class SiteError(StratoflowError):
    """A site refused or failed an operation (capacity, quota, API error)."""


class StagingError(StratoflowError):
    """A transfer failed or produced data that does not verify."""


class ChecksumMismatch(StagingError):
    """A staged copy's checksum differs from the declared one."""


class Refused(StratoflowError):
    """Refused by policy (a path outside the allowed roots, a bad URL): retrying cannot
    help, so operators fail the task at once instead of retrying."""


class StagingRefused(StagingError, Refused):
    """A staging request the site will never serve."""


class ChecksumsUnsupported(StagingRefused):
    """The storage cannot read a file's checksums back (FTS3 moves files, it does not
    read them): its replicas are verified when copied, not later."""
