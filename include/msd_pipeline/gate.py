"""The champion/challenger gate: pure rules, no Airflow, MLflow or Mongo.

A challenger (the models of one training run) replaces the champion only when all of
these hold, every model scored on the same artist-disjoint test split:

* ``absolute``: its decade model beats the majority-decade baseline (macro-F1) and its
  year model beats the mean-year baseline (RMSE);
* ``year_rmse``: its year RMSE is at least ``year_rmse_margin`` years below the
  champion's;
* ``decade_macro_f1``: its decade macro-F1 is no worse than the champion's minus
  ``decade_f1_tolerance``.

With no champion yet only the absolute rule applies. A passing challenger waits for a
human approval when ``require_approval`` is set (``outcome == "await_approval"``).
"""
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Mapping, Optional

PROMOTE = "promote"
REJECT = "reject"
AWAIT_APPROVAL = "await_approval"


@dataclass(frozen=True)
class GateSettings:
    year_rmse_margin: float = 0.0
    decade_f1_tolerance: float = 0.0
    require_approval: bool = False


@dataclass(frozen=True)
class Scores:
    """Test-split scores of one model pair (decade classifier + year regressor)."""
    year_rmse: float
    decade_macro_f1: float


@dataclass(frozen=True)
class Check:
    rule: str
    passed: bool
    reason: str


@dataclass(frozen=True)
class Decision:
    outcome: str  # PROMOTE, REJECT or AWAIT_APPROVAL
    checks: List[Check]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def reasons(self) -> List[str]:
        return [check.reason for check in self.checks]

    def to_dict(self) -> Dict[str, Any]:
        return {"outcome": self.outcome, "passed": self.passed, "reasons": self.reasons,
                "checks": [asdict(check) for check in self.checks]}


def decide(challenger: Scores, baseline: Scores, champion: Optional[Scores],
           settings: GateSettings, champion_error: Optional[str] = None) -> Decision:
    """The gate's decision for ``challenger`` against ``baseline`` and ``champion``;
    ``champion_error`` says why a champion exists but could not be scored (the
    challenger is then rejected: nothing shows that it is better)."""
    checks = [_absolute_check(challenger, baseline)]
    if champion_error:
        checks.append(Check("champion_scored", False, "the champion could not be scored on "
                                                      "this split: " + champion_error))
    elif champion is None:
        checks.append(Check("first_model", True, "no champion yet: only the absolute "
                                                 "rule applies"))
    else:
        checks += [_rmse_check(challenger, champion, settings.year_rmse_margin),
                   _f1_check(challenger, champion, settings.decade_f1_tolerance)]
    if not all(check.passed for check in checks):
        return Decision(REJECT, checks)
    return Decision(AWAIT_APPROVAL if settings.require_approval else PROMOTE, checks)


def _absolute_check(challenger: Scores, baseline: Scores) -> Check:
    decade_ok = challenger.decade_macro_f1 > baseline.decade_macro_f1
    year_ok = challenger.year_rmse < baseline.year_rmse
    reason = ("decade macro-F1 {:.4f} {} baseline {:.4f}; year RMSE {:.3f} {} baseline {:.3f}"
              .format(challenger.decade_macro_f1, ">" if decade_ok else "<=",
                      baseline.decade_macro_f1, challenger.year_rmse,
                      "<" if year_ok else ">=", baseline.year_rmse))
    return Check("absolute", decade_ok and year_ok, reason)


def _rmse_check(challenger: Scores, champion: Scores, margin: float) -> Check:
    needed = champion.year_rmse - margin
    passed = challenger.year_rmse <= needed
    return Check("year_rmse", passed,
                 "year RMSE {:.3f} {} champion {:.3f} - margin {:g} = {:.3f}".format(
                     challenger.year_rmse, "<=" if passed else ">", champion.year_rmse,
                     margin, needed))


def _f1_check(challenger: Scores, champion: Scores, tolerance: float) -> Check:
    floor = champion.decade_macro_f1 - tolerance
    passed = challenger.decade_macro_f1 >= floor
    return Check("decade_macro_f1", passed,
                 "decade macro-F1 {:.4f} {} champion {:.4f} - tolerance {:g} = {:.4f}".format(
                     challenger.decade_macro_f1, ">=" if passed else "<",
                     champion.decade_macro_f1, tolerance, floor))


def decide_from_metrics(metrics: Mapping[str, Any], settings: GateSettings) -> Decision:
    """The decision for the training run whose metrics.json is ``metrics``."""
    scores = scores_from_metrics(metrics)
    champion = metrics.get("champion") or {}
    return decide(scores["challenger"], scores["baseline"], scores["champion"], settings,
                  champion.get("error"))


def scores_from_metrics(metrics: Mapping[str, Any]) -> Dict[str, Optional[Scores]]:
    """Challenger, baseline and champion scores from a training run's metrics.json
    (the champion's under ``champion``, present when one was scored)."""
    decade, year = metrics["decade"], metrics["year"]
    champion = metrics.get("champion")
    scored = champion and "error" not in champion
    return {
        "challenger": Scores(year["test"]["rmse"], decade["test"]["macro_f1"]),
        "baseline": Scores(year["baseline"]["rmse"], decade["baseline"]["macro_f1"]),
        "champion": Scores(champion["year"]["rmse"], champion["decade"]["macro_f1"])
        if scored else None,
    }
