"""The TensorBoard sink's options: ``sink_config={"tensorboard": {...}}`` or ``EVALSINK_TENSORBOARD__*``.

Two groups: where and how the event files are written, and whether and where the run folder is
pushed to the Hub (docs/sinks/tensorboard.md). The push options carry the Hub sink's names and
defaults (``org``, ``repo_id``, ``public``, ``token``, ``endpoint``, ``retry_*``, ``timeout``), so a user
configures both sinks the same way; they are declared here rather than inherited from
``evalsink_hub.HubSinkConfig`` because evalsink-hub is an optional extra of this distribution and
the config must validate (``evalsink sinks --check``) without it. A test pins the shared defaults to
the Hub sink's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, SecretStr, field_validator

from evalsink import SinkConfig

if TYPE_CHECKING:
    from evalsink_hub.retry import RetryPolicy

DEFAULT_REPO_NAME = "tensorboard_logs"
"""lighteval's TensorBoard repository: ``{hub_results_org}/tensorboard_logs`` (a model repository)."""
DEFAULT_PATH_IN_REPO = "tb"
"""lighteval's folder in that repository: a run is ``tb/{run}/`` there, as it is ``{output_dir}/tb/{run}``
on disk."""


class TensorBoardSinkConfig(SinkConfig):
    """``sink_config={"tensorboard": {...}}`` or ``EVALSINK_TENSORBOARD__<FIELD>=...``."""

    prefix: str | None = Field(default=None, min_length=1)
    """Metric prefix; default: the tracker's ``tensorboard_metric_prefix`` (lighteval's "eval")."""
    logdir: str | None = Field(default=None, min_length=1)
    """TensorBoard root folder (local); default ``{output_dir}/tb``. Needed when output_dir is a URL."""
    step: int | None = Field(default=None, ge=0)
    """Global step when no ``nanotron_run_info`` gives one; default 0."""
    run_name: str | None = Field(default=None, min_length=1)
    """Run folder below the root; default ``{nanotron_run_info.run}_{prefix}`` or ``{prefix}``."""

    # -- pushing the run folder to the Hub (needs evalsink-tensorboard[hub]) ----------------------
    push: bool | None = None
    """Push the run folder's event files after each save. None: push when an org is known (``org``
    or the tracker's ``hub_results_org``, as lighteval did) or ``repo_id`` is set."""
    org: str | None = Field(default=None, min_length=1)
    """Namespace of the TensorBoard repository; default: the tracker's ``hub_results_org``."""
    repo_id: str | None = Field(default=None, min_length=3)
    """Model repository (``org/name``) to push to; default ``{org}/tensorboard_logs`` (lighteval's)."""
    path_in_repo: str = DEFAULT_PATH_IN_REPO
    """Folder of the repository that holds one sub-folder per run; "" puts the runs at its root."""
    public: bool = False
    """Create the repository public. lighteval always created it private, whatever the tracker's
    ``public``; an existing repository keeps its visibility."""
    token: SecretStr | None = None
    """Hugging Face token; default: ``HF_TOKEN``, else the login stored by ``hf auth login``."""
    endpoint: str | None = Field(default=None, min_length=1)
    """Hub URL; default: ``HF_ENDPOINT``, else huggingface_hub's (https://huggingface.co)."""
    retry_attempts: int = Field(default=5, ge=1, le=100)
    """Calls in total per Hub request, the first included (the Hub sink's rule)."""
    retry_backoff: float = Field(default=1.0, ge=0)
    """Seconds before the first retry, doubled at each further one (with jitter)."""
    retry_max_backoff: float = Field(default=30.0, ge=0)
    """Longest wait between two attempts (a ``Retry-After`` header may ask for more)."""
    timeout: float | None = Field(default=120.0, gt=0)
    """Bound of each HTTP request in seconds (connect, each read, each write); None waits forever."""

    @field_validator("org", "repo_id", "endpoint")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        return value or None

    @field_validator("repo_id")
    @classmethod
    def _namespaced(cls, value: str | None) -> str | None:
        if value is not None and value.count("/") != 1:
            raise ValueError(f"{value!r} is not a repository id of the form 'org/name'")
        return value

    @field_validator("path_in_repo")
    @classmethod
    def _relative_folder(cls, value: str) -> str:
        parts = [part for part in value.strip().replace("\\", "/").split("/") if part]
        if any(part in {".", ".."} for part in parts):
            raise ValueError(f"{value!r} is not a folder of the repository (no '.' or '..' parts)")
        return "/".join(parts)

    def retry_policy(self) -> RetryPolicy:
        """The Hub sink's :class:`~evalsink_hub.retry.RetryPolicy` with this sink's numbers."""
        from evalsink_hub.retry import RetryPolicy

        return RetryPolicy(
            attempts=self.retry_attempts,
            backoff=self.retry_backoff,
            max_backoff=self.retry_max_backoff,
            timeout=self.timeout,
        )
