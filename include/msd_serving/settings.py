"""The prediction service's settings: environment variables, overridden by the command
line of ``python -m msd_serving.app`` (which passes them on to its workers as the same
variables).

API keys never come from the code or the pipeline configuration: from the file named by
$MSD_SERVING_API_KEYS_FILE (one key per line, ``#`` comments) and/or the environment
variable named by $MSD_SERVING_API_KEYS_ENV (default ``MSD_SERVING_API_KEYS``; keys
separated by commas or whitespace).
"""
import os
from dataclasses import dataclass, fields
from typing import Any, Dict, List, Mapping, Optional

from msd_serving.champion import MlflowAliasSource, RunFolderSource

DEFAULT_KEYS_ENV = "MSD_SERVING_API_KEYS"
TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """Settings the service cannot start with; the message says which and why."""


@dataclass(frozen=True)
class ServingSettings:
    run_uri: str = ""        # a run folder served directly, or
    tracking_uri: str = ""   # the MLflow server whose champion alias is served
    poll_seconds: float = 30.0
    max_songs: int = 10000
    max_upload_bytes: int = 64 * 1024 * 1024
    max_files: int = 100
    api_keys_file: str = ""
    api_keys_env: str = DEFAULT_KEYS_ENV
    # /predict and /model need a key: None = when any key is configured; True without
    # a key is a start-up error (fail closed).
    require_keys: Optional[bool] = None
    body_seconds: float = 30.0      # the whole request body must arrive within this
    header_seconds: float = 10.0    # and the request line + headers within this
    keep_alive_seconds: int = 5
    max_connections: int = 1000     # per worker; beyond: 503 at once
    inline_body_bytes: int = 32 * 1024   # larger JSON bodies are parsed and scored
    workers: int = 1                     # in the thread pool, off the event loop

    ENV = {"run_uri": "MSD_SERVING_RUN_URI", "tracking_uri": "MLFLOW_TRACKING_URI",
           "poll_seconds": "MSD_SERVING_POLL_SECONDS", "max_songs": "MSD_SERVING_MAX_SONGS",
           "max_upload_bytes": "MSD_SERVING_MAX_UPLOAD_BYTES",
           "max_files": "MSD_SERVING_MAX_FILES",
           "api_keys_file": "MSD_SERVING_API_KEYS_FILE",
           "api_keys_env": "MSD_SERVING_API_KEYS_ENV",
           "require_keys": "MSD_SERVING_REQUIRE_KEYS",
           "body_seconds": "MSD_SERVING_BODY_SECONDS",
           "header_seconds": "MSD_SERVING_HEADER_SECONDS",
           "keep_alive_seconds": "MSD_SERVING_KEEP_ALIVE_SECONDS",
           "max_connections": "MSD_SERVING_MAX_CONNECTIONS",
           "inline_body_bytes": "MSD_SERVING_INLINE_BODY_BYTES",
           "workers": "MSD_SERVING_WORKERS"}

    def source(self) -> Any:
        if self.run_uri:
            return RunFolderSource(self.run_uri)
        if self.tracking_uri:
            return MlflowAliasSource(self.tracking_uri)
        raise SettingsError("no model source: give a run folder (--run-uri, "
                            "$MSD_SERVING_RUN_URI) or an MLflow server (--tracking-uri, "
                            "$MLFLOW_TRACKING_URI)")

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "ServingSettings":
        env = os.environ if env is None else env
        values = {}
        for item in fields(cls):
            name = cls.ENV.get(item.name)
            if name in env:
                values[item.name] = _parse(item.name, name, env[name], item.type)
        return cls(**values)

    def to_env(self) -> Dict[str, str]:
        """These settings as the variables ``from_env`` reads (no key in them)."""
        return {self.ENV[item.name]: _format(getattr(self, item.name))
                for item in fields(self)}

    def api_keys(self, env: Optional[Mapping[str, str]] = None) -> List[str]:
        """The configured keys: the keys file's, then the keys variable's."""
        env = os.environ if env is None else env
        keys = []
        if self.api_keys_file:
            try:
                with open(self.api_keys_file, encoding="utf-8") as lines:
                    keys += [line.strip() for line in lines
                             if line.strip() and not line.lstrip().startswith("#")]
            except OSError as exc:
                raise SettingsError("API keys file ({}) unreadable: {}".format(
                    self.ENV["api_keys_file"], exc.strerror)) from exc
        keys += env.get(self.api_keys_env, "").replace(",", " ").split()
        return keys

    def keys_required(self, configured: int) -> bool:
        """Whether /predict and /model need a key, given how many keys are configured;
        refuses ``require_keys`` without one."""
        if self.require_keys and not configured:
            raise SettingsError(
                "{} is on but no API key is configured: put keys in the file named by {} "
                "or in ${}".format(self.ENV["require_keys"], self.ENV["api_keys_file"],
                                   self.api_keys_env))
        return configured > 0 if self.require_keys is None else self.require_keys


def _parse(field_name: str, variable: str, text: str, kind: Any) -> Any:
    kind = str(kind)
    try:
        if "bool" in kind:
            lowered = text.strip().lower()
            if lowered in TRUE | FALSE:
                return lowered in TRUE
            if lowered in ("", "auto"):
                return None
            raise ValueError("not a boolean")
        if "float" in kind:
            return float(text)
        if "int" in kind:
            return int(text)
    except ValueError as exc:
        raise SettingsError("${}={!r}: {}".format(variable, text, exc)) from exc
    return text


def _format(value: Any) -> str:
    if value is None:
        return "auto"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
