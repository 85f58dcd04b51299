"""The few places where the sink relies on more than wandb's documented calls, kept in one module.

Each function says which wandb 0.31 behaviour it depends on; the tests exercise every one of them
against the installed wandb, so a wandb release that changes them fails the tests, not a user's
run. Nothing here is imported before the sink is constructed on the main rank.
"""

from __future__ import annotations

from typing import Any

ONLINE_MODES = ("online", "shared")


def import_wandb() -> Any:
    """The ``wandb`` module (~0.6 s to import): only a tracker that enables the sink pays for it."""
    import wandb

    return wandb


def configured_mode() -> str:
    """wandb's own idea of the mode (``WANDB_MODE``, ``wandb offline``/``disabled``, else online).

    Read from the settings of wandb's process-wide singleton, the same settings ``wandb.init``
    starts from; reading them starts no service process. ``dryrun`` and ``run`` are wandb's old
    names for offline and online.
    """
    from wandb.sdk import wandb_setup

    mode = str(wandb_setup.singleton().settings.mode)
    return {"dryrun": "offline", "run": "online"}.get(mode, mode)


def configured_resume() -> tuple[str | None, str | None]:
    """wandb's own resume and run id (``WANDB_RESUME``, ``WANDB_RUN_ID``), which ``wandb.init``
    uses when the sink passes none; read like :func:`configured_mode` (wandb 0.31 validates
    ``resume`` to ``allow``, ``must``, ``never`` or ``auto``)."""
    from wandb.sdk import wandb_setup

    settings = wandb_setup.singleton().settings
    resume, run_id = settings.resume, settings.run_id
    return (str(resume) if resume else None), (str(run_id) if run_id else None)


def has_credentials() -> bool:
    """Whether wandb finds credentials without asking: ``WANDB_API_KEY``, an identity token file,
    the ``wandb login`` netrc entry or a settings file, for the configured W&B host.

    ``wandb.init`` prompts for a key on a terminal when it finds none (and hangs a batch job that
    has a terminal); checking first, with wandb's own lookup and ``prompt=False``, turns that into
    an error before the evaluation. ``update_session=False`` leaves wandb's state untouched, unlike
    ``wandb.login()``, which also rewrites the user's settings file. The key itself is not kept.
    """
    from wandb.sdk import wandb_setup
    from wandb.sdk.lib import wbauth

    settings = wandb_setup.singleton().settings
    host = wbauth.HostUrl(settings.base_url, app_url=settings.app_url)
    found = wbauth.authenticate_session(host=host, source="evalsink", prompt=False, update_session=False)
    return found is not None


def lean_settings(wandb: Any) -> Any:
    """Settings for an evaluation run: no system metrics sampling, no console capture (the
    evaluation's output is not W&B's to store), no code or git snapshot."""
    return wandb.Settings(x_disable_stats=True, console="off", save_code=False, disable_git=True)


def incremental_table(wandb: Any, columns: list[str]) -> Any:
    """An empty table whose every ``run.log`` sends only the rows added since the previous one.

    Mixed types are allowed: a details field may be a number in one sample and text in the next
    (lighteval's parquet writer fails on exactly that).
    """
    return wandb.Table(columns=columns, log_mode="INCREMENTAL", allow_mixed_types=True)


def send_increment(log: Any, key: str, table: Any, rows: list[list[Any]]) -> None:
    """Append ``rows`` to an incremental table, log it once, then forget the rows.

    An INCREMENTAL table writes only the rows added since its previous log, but keeps every row it
    ever held in ``table.data``, so a long evaluation would hold all its details in memory.
    ``run.log`` serializes the increment synchronously (the run's media file and the increment
    artifact are written before it returns) and records the last row it sent in
    ``table._last_logged_idx``; once that index is the last row, the rows are dropped and the index
    reset, and the next log sends exactly the rows added after it. If wandb did not record the log
    as expected (a changed wandb, a run that ignored the call), nothing is dropped silently: the
    sink fails.
    """
    for row in rows:
        table.add_data(*row)
    log({key: table})
    logged = getattr(table, "_last_logged_idx", None)
    if logged != len(table.data) - 1:
        raise RuntimeError(
            f"wandb did not log the increment of table {key!r} as expected "
            f"(last logged row {logged!r} of {len(table.data)}); its rows were not sent"
        )
    del table.data[:]
    table._last_logged_idx = -1
