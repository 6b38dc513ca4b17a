"""What a preflight check found, and the verdict over all of them."""
from dataclasses import dataclass
from typing import List, Optional

OK = "ok"
PROBLEM = "problem"
NOT_VERIFIED = "not verified"
# Works, against a recommendation: does not fail the run.
WARNING = "warning"


class PreflightError(ValueError):
    """The run cannot work as configured: one line per problem, each with its fix."""


@dataclass(frozen=True)
class Finding:
    check: str
    status: str  # OK | PROBLEM | NOT_VERIFIED | WARNING
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


def warning(check: str, detail: str) -> Finding:
    """``detail`` says which recommendation is not followed, and how to follow it."""
    return Finding(check, WARNING, detail)


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


def cli(prog: str, run_checks, argv: Optional[List[str]] = None) -> int:
    """A preflight's command line: ``--config PATH``, one line per finding, exit 1 when a
    problem was found. Uses the Airflow connections of the environment (AIRFLOW_CONN_*,
    a secrets backend) as the run's tasks do."""
    import argparse

    from msdlib.config import load_config

    parser = argparse.ArgumentParser(prog=prog, description="The checks of a run before "
                                                            "anything is paid for.")
    parser.add_argument("--config", help="pipeline configuration (default: $MSD_CONFIG, "
                                         "else include/pipeline.toml)")
    args = parser.parse_args(argv)
    findings = run_checks(load_config(args.config))
    for finding in findings:
        print(finding.line())
    return 1 if any(finding.status == PROBLEM for finding in findings) else 0
