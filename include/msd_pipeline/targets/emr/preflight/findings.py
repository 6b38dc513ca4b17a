"""What a preflight check found, and the verdict over all of them."""
from dataclasses import dataclass
from typing import List

OK = "ok"
PROBLEM = "problem"
NOT_VERIFIED = "not verified"


class PreflightError(ValueError):
    """The run cannot work as configured: one line per problem, each with its fix."""


@dataclass(frozen=True)
class Finding:
    check: str
    status: str  # OK | PROBLEM | NOT_VERIFIED
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"[{self.status}] {self.check}: {self.detail}"
        if self.status == PROBLEM and self.fix:
            text += f"; fix: {self.fix}"
        return " ".join(text.split())


def ok(check: str, detail: str) -> Finding:
    return Finding(check, OK, detail)


def problem(check: str, detail: str, fix: str) -> Finding:
    return Finding(check, PROBLEM, detail, fix)


def not_verified(check: str, detail: str) -> Finding:
    """``detail`` says why, and what to check by hand."""
    return Finding(check, NOT_VERIFIED, detail)


def require_ready(findings: List[Finding]) -> None:
    """Raise PreflightError listing every problem (then what was not verified, which
    does not fail the run)."""
    problems = [finding.line() for finding in findings if finding.status == PROBLEM]
    if not problems:
        return
    unverified = [finding.line() for finding in findings if finding.status == NOT_VERIFIED]
    raise PreflightError("\n".join(
        [f"preflight found {len(problems)} problem(s):", *problems]
        + (["not verified (check by hand):", *unverified] if unverified else [])))
