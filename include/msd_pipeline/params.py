"""The DAGs' trigger form, built from the typed configuration's own metadata.

A setting is on the form when its field in ``msdlib.config`` carries a ``FormField``; its
default, JSON type and bounds come from the same field, so adding a setting to the form
is one change in one place. The form's values become dotted overrides of the
configuration; two fields are not settings: ``train`` and ``config_overrides``.
"""
from typing import Any, Dict, List, Optional

from airflow.sdk import Param

from msdlib.config import PipelineConfig, SettingInfo, settings_info

TRAIN_PARAM = "train"
OVERRIDES_PARAM = "config_overrides"
JSON_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
              (list, "array"), (dict, "object"))


def form_settings(target: str, retrain_only: bool = False) -> List[SettingInfo]:
    """The settings on ``target``'s form (the retraining DAGs': ``retrain`` ones only)."""
    return [info for info in settings_info() if info.form is not None
            and info.form.target in (None, target)
            and (info.form.retrain or not retrain_only)]


def pipeline_params(config: PipelineConfig, target: str,
                    retrain_only: bool = False) -> Dict[str, Param]:
    """The form of ``target``'s DAGs, defaulting to ``config``."""
    params = {info.form.name: _param(info, _value(config, info.key))
              for info in form_settings(target, retrain_only)}
    if not retrain_only:
        params[TRAIN_PARAM] = Param(True, type="boolean", title="Train after ingest",
                                    description="off: ingest only; the songs event then "
                                                "triggers the retraining DAG")
    params[OVERRIDES_PARAM] = Param({}, type="object", title="Advanced: config overrides",
                                    description='Dotted keys, e.g. {"training.parallelism": 1}')
    return params


def config_overrides(params: Dict[str, Any], target: str) -> Dict[str, Any]:
    """Dotted config overrides from the form values (``config_overrides`` wins)."""
    overrides = {info.key: params[info.form.name] for info in form_settings(target)
                 if params.get(info.form.name) is not None}
    overrides.update(params.get(OVERRIDES_PARAM) or {})
    return overrides


def _param(info: SettingInfo, value: Any) -> Param:
    form = info.form
    schema = info.rule.json_schema() if info.rule else {}
    kinds = [_json_type(value)]
    if form.nullable:
        kinds, value = ["null"] + kinds, value or None
    if "enum" not in schema:
        schema["type"] = kinds if len(kinds) > 1 else kinds[0]
    description: Optional[str] = form.description or None
    return Param(value, title=form.title, description=description, **schema)


def _json_type(value: Any) -> str:
    return next(name for kind, name in JSON_TYPES if isinstance(value, kind))


def _value(config: PipelineConfig, key: str) -> Any:
    section, name = key.split(".")
    value = getattr(getattr(config, section), name)
    return list(value) if isinstance(value, list) else value
