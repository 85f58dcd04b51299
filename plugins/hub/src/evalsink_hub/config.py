"""The hub sink's options: ``sink_config={"hub": {...}}`` or ``EVALSINK_HUB__<FIELD>=...``."""

from __future__ import annotations

import string
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from evalsink import SinkConfig
from evalsink_hub.naming import name_problem, repo_id_problem
from evalsink_hub.retry import RetryPolicy

DEFAULT_COMMIT_MESSAGE = "Upload evaluation run {date_id} of {model_name}"
_PLACEHOLDERS = {"model_name", "date_id"}


class HubSinkConfig(SinkConfig):
    """Where and how the hub sink pushes. Every field is optional; see docs/sinks/hub.md."""

    org: str | None = Field(default=None, min_length=1)
    """Namespace of the details repository; default: the tracker's ``hub_results_org``."""
    repo_id: str | None = Field(default=None, min_length=3)
    """Details repository (``org/name``), instead of lighteval's ``{org}/details_{model}[_private]``."""
    public: bool | None = None
    """Public repository (no ``_private`` suffix, created public); default: the tracker's ``public``."""
    token: SecretStr | None = None
    """Hugging Face token; default: ``HF_TOKEN``, else the login stored by ``hf auth login``."""
    endpoint: str | None = Field(default=None, min_length=1)
    """Hub URL; default: ``HF_ENDPOINT``, else huggingface_hub's (https://huggingface.co)."""
    gated: Literal["auto", "manual"] | None = None
    """Make the details repository gated (access requests approved automatically or by hand)."""
    results_repo_id: str | None = Field(default=None, min_length=3)
    """Push the results files to this repository instead (as ``{model_name}/results_{date_id}.*``)."""
    commit_message: str = Field(default=DEFAULT_COMMIT_MESSAGE, min_length=1)
    """Commit title; placeholders ``{model_name}`` and ``{date_id}``."""
    details_path_template: str | None = None
    """The local sink's ``details_path_template``, when it is set there: where to read details."""
    retry_attempts: int = Field(default=5, ge=1, le=100)
    """Calls in total per Hub request, the first included."""
    retry_backoff: float = Field(default=1.0, ge=0)
    """Seconds before the first retry, doubled at each further one (with jitter)."""
    retry_max_backoff: float = Field(default=30.0, ge=0)
    """Longest wait between two attempts (a ``Retry-After`` header may ask for more)."""
    timeout: float | None = Field(default=120.0, gt=0)
    """Bound of each HTTP request in seconds (connect, each read, each write); None waits forever."""

    @field_validator("org", "repo_id", "results_repo_id", "endpoint")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        return value or None

    @field_validator("repo_id", "results_repo_id")
    @classmethod
    def _valid_repo_id(cls, value: str | None) -> str | None:
        """A repository the Hub refuses fails here, when the tracker is built, not after the run."""
        if value is not None:
            problem = repo_id_problem(value)
            if problem is not None:
                raise ValueError(f"{value!r} is not a valid Hub repository id: {problem}")
        return value

    @field_validator("org")
    @classmethod
    def _valid_org(cls, value: str | None) -> str | None:
        """A namespace the Hub refuses fails here, when the tracker is built, not after the run."""
        if value is not None:
            problem = name_problem(value, repository=False)
            if problem is not None:
                raise ValueError(f"{value!r} is not a valid Hub namespace: it {problem}")
        return value

    @field_validator("commit_message")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        fields = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        unknown = fields - _PLACEHOLDERS
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {', '.join(sorted(unknown))}; use {{model_name}} and {{date_id}}"
            )
        return value

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            attempts=self.retry_attempts,
            backoff=self.retry_backoff,
            max_backoff=self.retry_max_backoff,
            timeout=self.timeout,
        )
