"""Turning model and task names into file-system paths that can never escape ``output_dir``.

lighteval joins names into paths as they are: a model called ``../../x`` writes outside the output
folder and a task name with ``/`` crashes after the results are written. The mapping here keeps
ordinary names unchanged (including lighteval's ``:`` and ``|``) and percent-encodes only what
could change the meaning of a path, so two different names never share a file:

* ``%``, ``~`` (it marks shortened names), ``/`` and ``\\`` inside a task name, NUL and
  other control characters become ``%XX`` (``/`` in a model name separates ``org/model``
  folders, as in lighteval);
* a component that is exactly ``.`` or ``..`` has its dots encoded (``%2E%2E``);
* a component longer than 180 bytes is cut and suffixed with a hash of the full name, so file
  names stay within the usual 255-byte limit;
* an empty model name becomes ``unknown-model``; an empty task name is refused.
"""

from __future__ import annotations

from datetime import datetime

# 255-byte file names minus what the layout adds around a task name
# (".details_" + "_<date_id>.parquet" + ".tmp-xxxxxxxx" is about 60 bytes)
_MAX_COMPONENT_BYTES = 180
UNKNOWN_MODEL = "unknown-model"


def _encode_char(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))


def safe_component(name: str) -> str:
    """Map one name to a single safe file-name component (injective for non-empty names)."""
    out = []
    for char in name:
        if char in "%/\\~" or ord(char) < 0x20 or ord(char) == 0x7F or 0xD800 <= ord(char) <= 0xDFFF:
            out.append(_encode_char(char))
        else:
            out.append(char)
    component = "".join(out)
    if component in {".", ".."}:
        component = component.replace(".", "%2E")
    encoded = component.encode("utf-8")
    if len(encoded) > _MAX_COMPONENT_BYTES:
        import xxhash

        digest = xxhash.xxh64(encoded).hexdigest()
        head = encoded[: _MAX_COMPONENT_BYTES - 18].decode("utf-8", "ignore")
        component = f"{head}~{digest}"
    return component


def model_path(model_name: str | None) -> str:
    """The relative folder for a model: ``org/model`` stays two folders, every part made safe."""
    parts = [safe_component(part) for part in (model_name or "").split("/") if part not in {""}]
    return "/".join(parts) if parts else UNKNOWN_MODEL


def task_file_part(task_name: str) -> str:
    if not task_name:
        raise ValueError("task_name is empty: every detail needs the name of the task it belongs to")
    return safe_component(task_name)


def new_date_id(now: datetime | None = None) -> str:
    """lighteval's run id: local ISO time with ':' replaced by '-' (e.g. 2025-11-05T14-43-47.148527)."""
    return (now or datetime.now()).isoformat().replace(":", "-")


def checked_date_id(date_id: str) -> str:
    """``date_id`` if it can name a folder and files of the run, else ValueError.

    A date id becomes a path component as it is (``details/{model}/{date_id}/``), and one given to
    ``publish()``, read from a manifest or taken from a results file's name could hold a separator
    or ``..``. Encoding it like a task name would make its files undiscoverable by the date id
    the caller knows, so it is refused instead.
    """
    bad = not date_id or date_id.startswith(".") or safe_component(date_id) != date_id
    if bad or date_id.strip() != date_id:
        raise ValueError(
            f"{date_id!r} is not a usable date id: it names a folder and files of the run, so it must "
            "be one file-name part (no '/', '\\', '%', '~', control characters, surrounding spaces, "
            "no leading '.': a hidden folder, or '..'), like lighteval's 2025-11-05T14-43-47.148527"
        )
    return date_id


def split_model_name(model_name: str | None) -> tuple[str, str]:
    """(org, model) as lighteval's results_path_template uses them; org is '' for a bare name."""
    parts = (model_name or UNKNOWN_MODEL).split("/")
    if len(parts) >= 2:
        return parts[0], parts[1]
    return "", parts[0]
