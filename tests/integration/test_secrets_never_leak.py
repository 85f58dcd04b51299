"""Secrets never reach an output: every sink in one run, a sentinel in every place a secret can be.

One evaluation runs with the sinks local, hub (loopback Hub), tensorboard (pushing to the
loopback Hub), trackio (local) and wandb (offline), with

* ``HF_TOKEN`` and ``WANDB_API_KEY`` set to sentinels;
* a ``SecretStr`` token in the hub and in the tensorboard sink configs (two more);
* a model config (a dataclass, a mapping or a pydantic model) whose fields ``api_key``,
  ``hf_token``, ``password``, ``client_secret`` and ``auth_token`` hold sentinels, at the top and
  nested (a dataclass, a dict, a list of dicts, a ``SecretStr``, camelCase names), written into
  strings (an ``api_key=`` in a lighteval ``model_args`` string, the password of a URL in a field
  whose name says nothing), plus secret fields in the generation parameters and a task config.

Then every sentinel is searched for, as text and base64 (each of the three alignments, standard
and URL-safe alphabets), in: every file below the test's folder (output folder with the results,
details and event files; the spool and manifest, read while the run is live and kept by a failed
run; the Hugging Face cache), below ``TRACKIO_DIR`` and below the wandb root; every file of every
commit of every repository the run wrote to on the loopback Hub, and each commit's title and
description; the paths and queries of the requests; the logs (every logger at DEBUG), stdout and
stderr (file-descriptor level), warnings, the save report. Parquet files and wandb's run file are
searched decoded too, since compression or block framing can split a string.

Each search is shown to work: a *canary* (a non-secret value logged beside the secrets) must be
found in every store, and each secret field must hold the redaction marker ``**********``
(``jsonsafe.REDACTED``) where the store keeps the configuration — the documented behaviour
(``jsonsafe.redact_secrets``) is to redact the value, not to drop the field.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import io
import json
import logging
import re
import uuid
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
from loopback_hub import LoopbackHub

from evalsink import EvaluationTracker, SaveReport, SinkConfigError, jsonsafe

REDACTED = jsonsafe.REDACTED
ORG = "evalsink-org"


def _sentinel(name: str) -> str:
    """Unique per test session and letters and digits only (no escaping can change it)."""
    return f"Leak{name}{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}"


SECRETS = {
    "env HF_TOKEN": "hf_" + _sentinel("EnvHfToken"),
    "env WANDB_API_KEY": _sentinel("EnvWandbApiKey"),
    "hub config token": "hf_" + _sentinel("HubSinkToken"),
    "tensorboard config token": "hf_" + _sentinel("TensorBoardSinkToken"),
    "model api_key": _sentinel("ModelApiKey"),
    "model hf_token": _sentinel("ModelHfToken"),
    "model password": _sentinel("ModelPassword"),
    "model client_secret": _sentinel("ModelClientSecret"),
    "model auth_token": _sentinel("ModelAuthToken"),
    "nested dataclass auth_token": _sentinel("NestedAuthToken"),
    "nested dict password": _sentinel("NestedPassword"),
    "nested list api_key": _sentinel("ListApiKey"),
    "nested SecretStr": _sentinel("NestedSecretStr"),
    "SecretStr under a plain name": _sentinel("PlainNamedSecretStr"),
    "camelCase accessToken": _sentinel("CamelAccessToken"),
    "camelCase clientSecret": _sentinel("CamelClientSecret"),
    "generation api_key": _sentinel("GenerationApiKey"),
    "task hf_token": _sentinel("TaskHfToken"),
    "model_args api_key=": _sentinel("ModelArgsApiKey"),
    "URL password": _sentinel("UrlPassword"),
}
CANARY = _sentinel("CanaryModelRevision")  # a model config field that is not a secret
DOC_CANARY = _sentinel("CanaryQuery")  # a details value


# -- the configuration the evaluation logs -------------------------------------------------------------
@dataclasses.dataclass
class Endpoint:
    url: str
    auth_token: str


@dataclasses.dataclass
class ModelConfig:
    model_name: str
    revision: str
    api_key: str
    hf_token: str
    password: str
    client_secret: str
    auth_token: str
    endpoint: Endpoint
    extra: dict[str, Any]
    servers: list[dict[str, Any]]
    login: Any
    accessToken: str  # noqa: N815 - the camelCase a JavaScript-minded config would use
    clientSecret: str  # noqa: N815
    model_args: str  # lighteval's "key=value,..." string


class Credentials(pydantic.BaseModel):
    user: str
    secret: pydantic.SecretStr
    opaque: pydantic.SecretStr  # only its type says it is a secret


def model_config(form: str) -> Any:
    values: dict[str, Any] = {
        "model_name": "org/tiny-model",
        "revision": CANARY,
        "api_key": SECRETS["model api_key"],
        "hf_token": SECRETS["model hf_token"],
        "password": SECRETS["model password"],
        "client_secret": SECRETS["model client_secret"],
        "auth_token": SECRETS["model auth_token"],
        "endpoint": Endpoint(
            url=f"http://me:{SECRETS['URL password']}@127.0.0.1:1",  # a field whose name says nothing
            auth_token=SECRETS["nested dataclass auth_token"],
        ),
        "model_args": f"pretrained=org/tiny-model,api_key={SECRETS['model_args api_key=']},revision=main",
        "extra": {"batch_size": 8, "db": {"password": SECRETS["nested dict password"]}},
        "servers": [{"name": "a", "api_key": SECRETS["nested list api_key"]}],
        "login": Credentials(
            user="me",
            secret=pydantic.SecretStr(SECRETS["nested SecretStr"]),
            opaque=pydantic.SecretStr(SECRETS["SecretStr under a plain name"]),
        ),
        "accessToken": SECRETS["camelCase accessToken"],
        "clientSecret": SECRETS["camelCase clientSecret"],
    }
    if form == "dataclass":
        return ModelConfig(**values)
    if form == "dict":
        values["endpoint"] = dataclasses.asdict(values["endpoint"])
        return values
    raise AssertionError(form)


SECRET_FIELDS = [  # (path in config_general.model_config, the secret there)
    (["api_key"], "model api_key"),
    (["hf_token"], "model hf_token"),
    (["password"], "model password"),
    (["client_secret"], "model client_secret"),
    (["auth_token"], "model auth_token"),
    (["endpoint", "auth_token"], "nested dataclass auth_token"),
    (["extra", "db", "password"], "nested dict password"),
    (["servers", 0, "api_key"], "nested list api_key"),
    (["login", "secret"], "nested SecretStr"),
    (["login", "opaque"], "SecretStr under a plain name"),
    (["accessToken"], "camelCase accessToken"),
    (["clientSecret"], "camelCase clientSecret"),
]

TASK = "custom|secrets|0"
OTHER_TASK = "lighteval|mmlu:anatomy|5"


def log_evaluation(tracker: EvaluationTracker, form: str) -> None:
    tracker.general_config_logger.log_model_info(
        model_config(form),
        generation_parameters={"temperature": 0.0, "api_key": SECRETS["generation api_key"]},
    )
    tracker.task_config_logger.log(
        {
            TASK: {"name": TASK, "hf_repo": "org/data", "hf_token": SECRETS["task hf_token"]},
            OTHER_TASK: {"name": OTHER_TASK},
        }
    )
    for task, values in ((TASK, [1.0, 0.0, 1.0]), (OTHER_TASK, [0.5, 1.0])):
        for index, value in enumerate(values):
            doc = {"query": f"{DOC_CANARY} {task} #{index}", "choices": ["a", "b"], "gold_index": 0}
            response = {"input": f"question {index}", "text": ["a"]}
            tracker.metrics_logger.log(task, {"acc": value})
            tracker.details_logger.log(task, doc, response, {"acc": value})


# -- searching ----------------------------------------------------------------------------------------
def needles(secret: str) -> list[bytes]:
    """The secret as UTF-8, and the parts of its base64 that do not depend on its neighbours, at
    each of the three alignments, in the standard and URL-safe alphabets."""
    raw = secret.encode()
    found = [raw]
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * offset + raw).rstrip(b"=")
            start = 4 if offset else 0  # the first group mixes in the neighbour's bytes
            core = encoded[start : len(encoded) - 4]  # so may the last
            assert len(core) >= 16
            found.append(core)
    return found


NEEDLES = {name: needles(secret) for name, secret in SECRETS.items()}


def readable_forms(name: str, data: bytes) -> Iterator[bytes]:
    """The bytes of a stored file, and what they decode to where a string could be split."""
    yield data
    if data[:4] == b"PAR1":  # parquet: pages may be compressed or dictionary-encoded
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
        yield json.dumps(table.to_pylist(), default=str).encode()
        yield str(pq.read_metadata(io.BytesIO(data)).metadata).encode()
    elif data[:2] == b"\x1f\x8b":
        yield gzip.decompress(data)
    elif data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.namelist():
                yield archive.read(member)
    elif name.endswith(".wandb"):  # records are framed in 32 KiB blocks: join the payloads
        from wandb_runfile import record_payloads

        yield b"".join(record_payloads(data))


class Haystack:
    """Everything an evaluation left behind, by where it was found."""

    def __init__(self) -> None:
        self.items: dict[str, list[bytes]] = {}

    def add(self, where: str, data: bytes | str) -> None:
        blob = data.encode("utf-8", "backslashreplace") if isinstance(data, str) else data
        self.items.setdefault(where, []).extend(readable_forms(where, blob))

    def add_files(self, root: Path, label: str) -> None:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            self.add(f"{label}/{path.relative_to(root)}", path.read_bytes())

    def leaks(self) -> list[tuple[str, str]]:
        """(where, which secret) for every secret found anywhere."""
        return [
            (where, name)
            for where, blobs in self.items.items()
            for name, forms in NEEDLES.items()
            if any(needle in blob for blob in blobs for needle in forms)
        ]

    def holding(self, text: str) -> list[str]:
        needle = text.encode()
        return [where for where, blobs in self.items.items() if any(needle in blob for blob in blobs)]


def hub_repos(hub: LoopbackHub) -> set[tuple[str, str]]:
    """(repo type, repo id) of every repository the requests touched."""
    found = set()
    for request in hub.requests:
        match = re.match(r"^/api/(datasets|models)/([^/]+/[^/]+)/", request.path)
        if match:
            found.add((match[1][:-1], match[2]))
    return found


def add_hub(haystack: Haystack, hub: LoopbackHub) -> set[tuple[str, str]]:
    repos = hub_repos(hub)
    for repo_type, repo_id in sorted(repos):
        for commit in hub.commits(repo_id, repo_type):
            haystack.add(
                f"hub {repo_type} {repo_id} commit {commit.oid[:8]}",
                f"{commit.summary}\n{commit.description}",
            )
            for path, content in hub.files(repo_id, repo_type, revision=commit.oid).items():
                haystack.add(f"hub {repo_type} {repo_id}@{commit.oid[:8]}/{path}", content)
    for request in hub.requests:
        haystack.add("hub request line", f"{request.method} {request.path}?{request.query}")
    return repos


def add_logs(haystack: Haystack, caplog: pytest.LogCaptureFixture, capfd: Any, report: Any) -> None:
    haystack.add("log text", caplog.text)
    for record in caplog.records:
        haystack.add(f"log record {record.name}", f"{record.getMessage()}\n{record.exc_text or ''}")
    captured = capfd.readouterr()
    haystack.add("stdout", captured.out)
    haystack.add("stderr", captured.err)
    haystack.add("report", f"{report}\n{report!r}")


def get(data: Any, path: list[Any]) -> Any:
    for step in path:
        data = data[step]
    return data


def assert_redacted(model_config: dict[str, Any], where: str) -> None:
    """Each secret field is still there, holding the marker; the non-secret canary is kept."""
    for path, _ in SECRET_FIELDS:
        assert get(model_config, path) == REDACTED, (where, path)
    assert model_config["revision"] == CANARY, where
    assert model_config["extra"]["batch_size"] == 8, where
    assert model_config["login"]["user"] == "me", where


def assert_results_redacted(results: dict[str, Any], where: str) -> None:
    general = results["config_general"]
    assert_redacted(general["model_config"], where)
    assert general["generation_parameters"] == {"temperature": 0.0, "api_key": REDACTED}, where
    assert results["config_tasks"][TASK]["hf_token"] == REDACTED, where
    assert results["config_tasks"][TASK]["hf_repo"] == "org/data", where


# -- the tests ----------------------------------------------------------------------------------------
def all_sinks_tracker(out: Path) -> EvaluationTracker:
    """The five sinks; the hub and tensorboard sinks hold their tokens as SecretStr options."""
    project = f"evalsink-secrets-{uuid.uuid4().hex[:10]}"
    return EvaluationTracker(
        out,
        hub_results_org=ORG,
        sinks=["local", "hub", "tensorboard", "trackio", "wandb"],
        sink_config={
            "hub": {"token": SECRETS["hub config token"], "retry_backoff": 0},
            "tensorboard": {
                "push": True,
                "token": SECRETS["tensorboard config token"],
                "retry_backoff": 0,
                "timeout": 10,
            },
            "trackio": {"project": project},
            "wandb": {"project": project},
        },
    )


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRETS["env HF_TOKEN"])
    monkeypatch.setenv("WANDB_API_KEY", SECRETS["env WANDB_API_KEY"])


@pytest.mark.usefixtures("secret_env")
@pytest.mark.parametrize("form", ["dataclass", "dict"])
def test_no_secret_reaches_any_output(
    tmp_path: Path,
    loopback_hub: LoopbackHub,
    wandb_dirs: Path,
    trackio_dir: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: Any,
    form: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    loopback_hub.fail_next(1, 503, method="POST")  # a retry is logged: the log must not hold the token
    out = tmp_path / "out"
    haystack = Haystack()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker = all_sinks_tracker(out)
        with tracker:  # closed (its sinks finished) even if the test fails inside
            log_evaluation(tracker, form)
            tracker.details_logger.flush()  # the run has started; its spool and manifest are on disk
            live = out / ".evalsink" / "runs" / tracker.run_id
            [spool] = live.glob("details-*.jsonl")
            [manifest] = live.glob("details-*.meta.json")
            haystack.add_files(live, "live spool folder")
            report = tracker.save()
    assert report.ok, str(report)
    assert not live.exists()  # a saved run drops its spool: it was read while it lived

    haystack.add_files(tmp_path, "tmp_path")
    haystack.add_files(trackio_dir, "TRACKIO_DIR")
    haystack.add_files(wandb_dirs, "WANDB root")
    repos = add_hub(haystack, loopback_hub)
    add_logs(haystack, caplog, capfd, report)
    for warning in caught:
        haystack.add("warning", f"{warning.category.__name__}: {warning.message}")

    assert haystack.leaks() == []

    # -- the search sees every store: the canary is in each, beside the secrets it did not find ----
    details_repo = f"{ORG}/details_org__tiny-model_private"
    assert repos == {("dataset", details_repo), ("model", f"{ORG}/tensorboard_logs")}
    # (the wandb and trackio folders are the session's: this run's own files are the ones to check)
    wandb_run = f"WANDB root/{Path(tracker.sink('wandb').run_dir).relative_to(wandb_dirs)}/"
    trackio_db = f"TRACKIO_DIR/{tracker.sink('trackio').project}.db"
    holding = haystack.holding(CANARY)
    for store in (
        "live spool folder/details-",  # the manifest's config_general
        "tmp_path/out/results/",  # the results file
        "tmp_path/out/tb/",  # TensorBoard's eval_config text
        f"hub dataset {details_repo}@",  # the results pushed beside the details
        f"hub model {ORG}/tensorboard_logs@",  # the pushed event file
        trackio_db,  # the run's config
        wandb_run,  # the run's config
    ):
        assert any(where.startswith(store) for where in holding), (store, holding)
    details_holding = haystack.holding(DOC_CANARY)
    for store in (
        "live spool folder/details-",
        "tmp_path/out/details/",
        f"hub dataset {details_repo}@",
        trackio_db,
        wandb_run,
    ):
        assert any(where.startswith(store) for where in details_holding), (store, details_holding)

    # -- the tokens were used (so they were there to leak), as credentials only -------------------
    tokens = {request.token for request in loopback_hub.requests}
    assert tokens == {SECRETS["hub config token"], SECRETS["tensorboard config token"]}
    assert any(
        record.levelno >= logging.WARNING and "retry" in record.getMessage() for record in caplog.records
    )

    # -- where a configuration is kept, each secret field holds the redaction marker --------------
    [results_file] = (out / "results").rglob("results_*.json")
    results = json.loads(results_file.read_bytes())
    assert_results_redacted(results, "results file")
    pushed = loopback_hub.files(details_repo)
    [pushed_results] = [path for path in pushed if re.search(r"results_.*\.json$", path)]
    assert_results_redacted(json.loads(pushed[pushed_results]), "hub results file")
    assert DOC_CANARY.encode() in live_copy(haystack, spool.name)
    assert_redacted(
        json.loads(live_copy(haystack, manifest.name))["config_general"]["model_config"], "manifest"
    )
    assert_wandb_redacted(tracker)
    assert_trackio_redacted(tracker)
    assert_tensorboard_redacted(out)


def live_copy(haystack: Haystack, name: str) -> bytes:
    [data, *_] = haystack.items[f"live spool folder/{name}"]
    return data


def assert_wandb_redacted(tracker: EvaluationTracker) -> None:
    from wandb_runfile import read_run

    run = read_run(tracker.sink("wandb").run_dir)
    config = run.config
    assert_redacted(config["config_general"]["model_config"], "wandb config")
    assert config["config_general"]["generation_parameters"]["api_key"] == REDACTED


def assert_trackio_redacted(tracker: EvaluationTracker) -> None:
    from trackio_helpers import read_run

    _, _, config = read_run(tracker.sink("trackio").project)
    assert_redacted(config["config_general"]["model_config"], "trackio config")
    assert config["config_tasks"][TASK]["hf_token"] == REDACTED


def assert_tensorboard_redacted(out: Path) -> None:
    from tb_helpers import read_events, text_of

    [run_dir] = {path.parent for path in (out / "tb").rglob("*tfevents*")}
    [(_, text)] = text_of(read_events(run_dir), "eval_config")
    assert CANARY in text
    for key in (
        "api_key",
        "hf_token",
        "password",
        "client_secret",
        "auth_token",
        "accessToken",
        "clientSecret",
    ):
        assert re.search(rf"{key}\W+{re.escape(REDACTED)}", text), (key, text)


@pytest.mark.usefixtures("secret_env")
def test_a_failed_push_keeps_the_spool_and_still_leaks_nothing(
    tmp_path: Path, loopback_hub: LoopbackHub, caplog: pytest.LogCaptureFixture, capfd: Any
) -> None:
    """The hub and the TensorBoard push fail: their errors are in the report and the logs, and the
    run's spool and manifest are kept for a re-push. None of them holds a secret."""
    caplog.set_level(logging.DEBUG)
    loopback_hub.fail_next(1000, 500, method="POST", path_contains="/commit/")
    out = tmp_path / "out"
    tracker = EvaluationTracker(
        out,
        hub_results_org=ORG,
        sinks=["local", "hub", "tensorboard"],
        sink_config={
            "hub": {"token": SECRETS["hub config token"], "retry_backoff": 0, "retry_attempts": 2},
            "tensorboard": {
                "push": True,
                "token": SECRETS["tensorboard config token"],
                "retry_backoff": 0,
                "retry_attempts": 2,
                "timeout": 10,
            },
        },
    )
    with tracker:
        log_evaluation(tracker, "dict")
        report = tracker.save()
    assert not report.ok
    assert sorted(report.failed) == ["hub", "tensorboard"], str(report)

    kept = out / ".evalsink" / "runs" / tracker.run_id
    haystack = Haystack()
    haystack.add_files(tmp_path, "tmp_path")
    add_hub(haystack, loopback_hub)
    add_logs(haystack, caplog, capfd, report)
    assert haystack.leaks() == []

    [manifest] = kept.glob("details-*.meta.json")
    assert any(
        where.startswith(f"tmp_path/out/.evalsink/runs/{tracker.run_id}/details-")
        for where in haystack.holding(DOC_CANARY)
    )
    assert_redacted(json.loads(manifest.read_bytes())["config_general"]["model_config"], "kept manifest")
    assert "500" in str(report)  # the errors are reported, just without credentials


@pytest.mark.usefixtures("secret_env")
def test_report_and_sink_configs_hold_no_secret(tmp_path: Path, loopback_hub: LoopbackHub) -> None:
    tracker = all_sinks_tracker(tmp_path / "out")
    with tracker:
        log_evaluation(tracker, "dataclass")
        report: SaveReport = tracker.save()
    assert report.ok, str(report)
    shown = [str(report), repr(report)]
    for name in tracker.sink_names:
        config = tracker.sink(name).config
        shown += [
            repr(config),
            str(config),
            config.model_dump_json(),
            json.dumps(config.model_dump(mode="json")),
        ]
    for text in shown:
        for secret_name, forms in NEEDLES.items():
            assert not any(needle.decode() in text for needle in forms), (secret_name, text)
    hub_config = tracker.sink("hub").config
    assert hub_config.token is not None
    assert hub_config.token.get_secret_value() == SECRETS["hub config token"]  # held, not shown


@pytest.mark.parametrize(
    ("sink", "options"),
    [
        ("hub", {"org": ORG, "token": SECRETS["hub config token"], "retry_attempts": 0}),
        ("hub", {"org": ORG, "token": SECRETS["hub config token"], "tokne": SECRETS["hub config token"]}),
        ("tensorboard", {"token": SECRETS["tensorboard config token"], "timeout": -1}),
    ],
    ids=["invalid-value", "misspelt-option", "tensorboard-invalid-value"],
)
def test_a_config_error_does_not_repeat_the_token(tmp_path: Path, sink: str, options: dict[str, Any]) -> None:
    with pytest.raises(SinkConfigError) as raised:
        EvaluationTracker(tmp_path, sinks=["local", sink], sink_config={sink: options})
    message = str(raised.value)
    assert sink in message
    for forms in NEEDLES.values():
        assert not any(needle.decode() in message for needle in forms), message


def test_a_token_from_the_environment_is_not_repeated_either(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVALSINK_HUB__TOKEN", SECRETS["hub config token"])
    monkeypatch.setenv("EVALSINK_HUB__RETRY_ATTEMPTS", "0")
    with pytest.raises(SinkConfigError) as raised:
        EvaluationTracker(tmp_path, sinks=["local", "hub"], hub_results_org=ORG)
    assert "EVALSINK_HUB__RETRY_ATTEMPTS='0'" in str(raised.value)  # the bad value is shown, the token not
    assert SECRETS["hub config token"] not in str(raised.value)


@pytest.mark.parametrize(
    "key",
    [
        "accessToken",
        "authToken",
        "clientSecret",
        "hfToken",
        "HFToken",
        "secretKey",
        "privateKey",
        "awsSecretAccessKey",
        "passphrase",
        "Authorization",
        "bearer",
        "db_pwd",
    ],
)
def test_camel_case_and_other_secret_names_look_secret(key: str) -> None:
    """Regression: camelCase names (``accessToken``...) were not redacted."""
    assert jsonsafe.looks_secret(key)
    assert jsonsafe.redact_secrets({key: "value"}) == {key: REDACTED}


@pytest.mark.parametrize("key", ["padToken", "eosTokenId", "maxNewTokens", "tokenizerName", "numTokens"])
def test_camel_case_tokenizer_settings_are_not_secrets(key: str) -> None:
    assert not jsonsafe.looks_secret(key)
