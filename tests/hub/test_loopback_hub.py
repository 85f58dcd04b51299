"""The loopback Hub, driven only through the real huggingface_hub client.

These tests pin what the Hub-sink tests rely on: if huggingface_hub changes the requests it makes,
or the server drifts from the Hub's answers, they fail here first, not as a puzzling sink failure.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    DatasetCard,
    HfApi,
    get_session,
    hf_hub_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
)
from huggingface_hub.hf_api import RepoFile, RepoFolder
from loopback_hub import DEFAULT_USER, DUMMY_TOKEN, LoopbackHub

REPO = "evalsink-org/results"
README = b"---\nlicense: mit\npretty_name: Evalsink results\ntags:\n- evaluation\n---\n# Results\n"


@pytest.fixture
def api(loopback_hub: LoopbackHub) -> HfApi:
    return HfApi(endpoint=loopback_hub.url, token=DUMMY_TOKEN)


@pytest.fixture
def anonymous(loopback_hub: LoopbackHub) -> HfApi:
    return HfApi(endpoint=loopback_hub.url, token=False)


@pytest.fixture
def dataset(api: HfApi) -> str:
    api.create_repo(REPO, repo_type="dataset")
    return REPO


def _commit_posts(hub: LoopbackHub, since: int = 0) -> list[int]:
    """The statuses of the commit requests the server answered (after request number ``since``)."""
    return [r.status for r in hub.requests[since:] if r.method == "POST" and "/commit/" in r.path]


def test_whoami_names_the_token_user_and_needs_a_token(loopback_hub: LoopbackHub, api: HfApi) -> None:
    me = api.whoami()
    assert me["name"] == DEFAULT_USER
    assert [org["name"] for org in me["orgs"]] == loopback_hub.orgs
    assert get_session().get(f"{loopback_hub.url}/api/whoami-v2").status_code == 401

    loopback_hub.valid_tokens = {DUMMY_TOKEN}
    with pytest.raises(HfHubHTTPError, match="Invalid user token") as error:
        HfApi(endpoint=loopback_hub.url, token="hf_not_the_right_one").whoami()
    assert error.value.response.status_code == 401


def test_create_repo_private_flag_exist_ok_and_default_namespace(
    loopback_hub: LoopbackHub, api: HfApi
) -> None:
    url = api.create_repo(REPO, repo_type="dataset", private=True)
    assert (url.repo_id, url.repo_type) == (REPO, "dataset")
    assert loopback_hub.repo(REPO).private is True
    assert api.dataset_info(REPO).private is True

    api.create_repo("evalsink-org/a-model")
    assert loopback_hub.repo("evalsink-org/a-model", "model").exists
    assert loopback_hub.repo("evalsink-org/a-model", "model").private is False
    assert not loopback_hub.repo("evalsink-org/a-model", "dataset").exists

    with pytest.raises(HfHubHTTPError) as error:
        api.create_repo(REPO, repo_type="dataset")
    assert error.value.response.status_code == 409
    again = api.create_repo(REPO, repo_type="dataset", exist_ok=True)
    assert again.repo_id == REPO
    assert len(loopback_hub.commits(REPO)) == 1  # exist_ok did not touch the repository

    assert api.create_repo("no-namespace", repo_type="dataset").repo_id == f"{DEFAULT_USER}/no-namespace"


def test_a_new_repo_holds_the_hubs_initial_commit(
    loopback_hub: LoopbackHub, api: HfApi, dataset: str
) -> None:
    (initial,) = loopback_hub.commits(dataset)
    assert (initial.summary, initial.parent, initial.added) == ("initial commit", None, [".gitattributes"])
    assert set(loopback_hub.files(dataset)) == {".gitattributes"}
    assert api.dataset_info(dataset).sha == initial.oid
    assert [c.title for c in api.list_repo_commits(dataset, repo_type="dataset")] == ["initial commit"]
    (main,) = api.list_repo_refs(dataset, repo_type="dataset").branches
    assert (main.name, main.target_commit) == ("main", initial.oid)


def test_upload_file_is_one_commit_and_downloads_back(
    loopback_hub: LoopbackHub, api: HfApi, dataset: str
) -> None:
    content = json.dumps({"accuracy": 0.5}).encode()
    info = api.upload_file(
        path_or_fileobj=content, path_in_repo="data/results.json", repo_id=dataset, repo_type="dataset"
    )

    last = loopback_hub.commits(dataset)[-1]
    assert info.oid == last.oid
    assert (last.summary, last.added, last.deleted) == (
        "Upload data/results.json with huggingface_hub",
        ["data/results.json"],
        [],
    )
    assert loopback_hub.files(dataset)["data/results.json"] == content
    path = hf_hub_download(dataset, "data/results.json", repo_type="dataset")
    assert Path(path).read_bytes() == content

    # the same content again: huggingface_hub compares the preupload oid and skips the commit
    api.upload_file(
        path_or_fileobj=content, path_in_repo="data/results.json", repo_id=dataset, repo_type="dataset"
    )
    assert loopback_hub.commits(dataset)[-1].oid == last.oid
    assert _commit_posts(loopback_hub) == [200]


def test_upload_folder_is_one_commit(
    loopback_hub: LoopbackHub, api: HfApi, dataset: str, tmp_path: Path
) -> None:
    folder = tmp_path / "run"
    (folder / "details").mkdir(parents=True)
    (folder / "results.json").write_text('{"a": 1}')
    (folder / "details" / "task.jsonl").write_text('{"x": 1}\n{"x": 2}\n')
    (folder / "README.md").write_bytes(README)

    api.upload_folder(folder_path=folder, repo_id=dataset, repo_type="dataset", commit_message="Add run")

    commits = loopback_hub.commits(dataset)
    assert [c.summary for c in commits] == ["initial commit", "Add run"]
    assert sorted(commits[-1].added) == ["README.md", "details/task.jsonl", "results.json"]
    assert loopback_hub.files(dataset)["details/task.jsonl"] == b'{"x": 1}\n{"x": 2}\n'
    assert _commit_posts(loopback_hub) == [200]


def test_create_commit_with_adds_and_deletes_is_one_atomic_commit(
    loopback_hub: LoopbackHub, api: HfApi, dataset: str
) -> None:
    api.create_commit(
        dataset,
        [
            CommitOperationAdd(path, path.encode())
            for path in ("old/1.txt", "old/2.txt", "stale.txt", "keep.txt")
        ],
        commit_message="seed",
        repo_type="dataset",
    )
    mark = len(loopback_hub.requests)

    api.create_commit(
        dataset,
        [
            CommitOperationAdd("new/a.txt", b"a"),
            CommitOperationAdd("new/b.txt", b"b"),
            CommitOperationAdd("keep.txt", b"changed"),
            CommitOperationDelete("stale.txt"),
            CommitOperationDelete("old/", is_folder=True),
        ],
        commit_message="replace",
        commit_description="several operations",
        repo_type="dataset",
    )

    assert _commit_posts(loopback_hub, since=mark) == [200]
    last = loopback_hub.commits(dataset)[-1]
    assert (last.summary, last.description) == ("replace", "several operations")
    assert last.added == ["new/a.txt", "new/b.txt", "keep.txt"]
    assert last.deleted == ["stale.txt", "old/1.txt", "old/2.txt"]
    files = loopback_hub.files(dataset)
    assert sorted(files) == [".gitattributes", "keep.txt", "new/a.txt", "new/b.txt"]
    assert files["keep.txt"] == b"changed"


def test_a_failing_operation_leaves_the_repo_untouched(
    loopback_hub: LoopbackHub, api: HfApi, dataset: str
) -> None:
    before = (loopback_hub.commits(dataset), loopback_hub.files(dataset))
    with pytest.raises(EntryNotFoundError, match="doesn't exist"):
        api.create_commit(
            dataset,
            [CommitOperationAdd("added.txt", b"x"), CommitOperationDelete("missing.txt")],
            commit_message="half",
            repo_type="dataset",
        )
    assert (loopback_hub.commits(dataset), loopback_hub.files(dataset)) == before


def test_list_repo_files_and_tree(loopback_hub: LoopbackHub, api: HfApi, dataset: str) -> None:
    paths = ["a/b/deep.txt", "a/top.txt", "root.txt"]
    api.create_commit(
        dataset, [CommitOperationAdd(p, b"1") for p in paths], commit_message="m", repo_type="dataset"
    )

    assert sorted(api.list_repo_files(dataset, repo_type="dataset")) == [".gitattributes", *paths]
    top = {(type(e).__name__, e.path) for e in api.list_repo_tree(dataset, repo_type="dataset")}
    assert top == {("RepoFile", ".gitattributes"), ("RepoFolder", "a"), ("RepoFile", "root.txt")}
    below = list(api.list_repo_tree(dataset, "a", repo_type="dataset", recursive=True))
    assert {e.path for e in below} == {"a/b", "a/b/deep.txt", "a/top.txt"}
    assert all(isinstance(e, RepoFolder) for e in below if e.path == "a/b")
    (deep,) = [e for e in below if isinstance(e, RepoFile) and e.path == "a/b/deep.txt"]
    assert deep.size == 1

    loopback_hub.tree_page_size = 2  # the client must follow the Link header
    mark = len(loopback_hub.requests)
    assert sorted(api.list_repo_files(dataset, repo_type="dataset")) == [".gitattributes", *paths]
    assert sum(1 for r in loopback_hub.requests[mark:] if "/tree/" in r.path) == 3  # 6 entries, 2 per page

    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(dataset, "no-such-folder", repo_type="dataset"))


def test_repo_info_and_dataset_info(loopback_hub: LoopbackHub, api: HfApi, dataset: str) -> None:
    api.upload_file(path_or_fileobj=README, path_in_repo="README.md", repo_id=dataset, repo_type="dataset")
    head = loopback_hub.commits(dataset)[-1]

    info = api.dataset_info(dataset, files_metadata=True)
    assert (info.id, info.sha, info.private, info.gated) == (dataset, head.oid, False, False)
    assert info.last_modified is not None
    sizes = {s.rfilename: s.size for s in info.siblings or []}
    assert sizes["README.md"] == len(README)
    assert info.card_data is not None
    assert info.card_data.license == "mit"
    assert info.card_data.pretty_name == "Evalsink results"

    same = api.repo_info(dataset, repo_type="dataset", revision=head.oid)
    assert same.sha == head.oid
    older = api.dataset_info(dataset, revision=loopback_hub.commits(dataset)[0].oid)
    assert [s.rfilename for s in older.siblings or []] == [".gitattributes"]

    api.create_repo("evalsink-org/a-model")
    assert api.model_info("evalsink-org/a-model").id == "evalsink-org/a-model"
    with pytest.raises(RepositoryNotFoundError):
        api.dataset_info("evalsink-org/does-not-exist")


def test_downloads_dataset_card_and_revisions(loopback_hub: LoopbackHub, api: HfApi, dataset: str) -> None:
    first = api.upload_file(
        path_or_fileobj=README, path_in_repo="README.md", repo_id=dataset, repo_type="dataset"
    )
    api.upload_file(path_or_fileobj=b"v2", path_in_repo="data.txt", repo_id=dataset, repo_type="dataset")

    card = DatasetCard.load(dataset, repo_type="dataset")
    assert card.data.license == "mit"
    assert "# Results" in card.text
    assert api.file_exists(dataset, "data.txt", repo_type="dataset")
    assert not api.file_exists(dataset, "nope.txt", repo_type="dataset")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(dataset, "nope.txt", repo_type="dataset")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("evalsink-org/missing", "README.md", repo_type="dataset")
    with pytest.raises(EntryNotFoundError):  # data.txt did not exist yet at the first commit
        hf_hub_download(dataset, "data.txt", repo_type="dataset", revision=first.oid)
    assert loopback_hub.files(dataset, revision=first.oid).keys() == {".gitattributes", "README.md"}

    api.create_repo("evalsink-org/a-model")
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id="evalsink-org/a-model")
    assert Path(hf_hub_download("evalsink-org/a-model", "config.json")).read_bytes() == b"{}"


def test_a_stale_parent_commit_is_rejected(loopback_hub: LoopbackHub, api: HfApi, dataset: str) -> None:
    parent = api.dataset_info(dataset).sha
    assert parent is not None
    api.upload_file(path_or_fileobj=b"1", path_in_repo="one.txt", repo_id=dataset, repo_type="dataset")
    count = len(loopback_hub.commits(dataset))

    with pytest.raises(HfHubHTTPError, match="A commit has happened since") as error:
        api.create_commit(
            dataset,
            [CommitOperationAdd("two.txt", b"2")],
            commit_message="late",
            repo_type="dataset",
            parent_commit=parent,
        )
    assert error.value.response.status_code == 412
    assert len(loopback_hub.commits(dataset)) == count

    head = loopback_hub.commits(dataset)[-1].oid
    api.create_commit(
        dataset,
        [CommitOperationAdd("two.txt", b"2")],
        commit_message="fresh",
        repo_type="dataset",
        parent_commit=head,
    )
    assert loopback_hub.commits(dataset)[-1].parent == head


def test_a_private_repo_is_invisible_without_a_token(
    loopback_hub: LoopbackHub, api: HfApi, anonymous: HfApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.create_repo(REPO, repo_type="dataset", private=True)
    api.upload_file(path_or_fileobj=b"secret", path_in_repo="s.txt", repo_id=REPO, repo_type="dataset")

    with pytest.raises(RepositoryNotFoundError) as error:
        anonymous.dataset_info(REPO)
    assert error.value.response.status_code == 401
    with pytest.raises(RepositoryNotFoundError):
        anonymous.list_repo_files(REPO, repo_type="dataset")
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(REPO, "s.txt", repo_type="dataset")
    with pytest.raises(RepositoryNotFoundError):
        anonymous.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO, repo_type="dataset")
    assert set(loopback_hub.files(REPO)) == {".gitattributes", "s.txt"}

    api.update_repo_settings(REPO, private=False, repo_type="dataset")
    assert loopback_hub.repo(REPO).private is False
    assert Path(hf_hub_download(REPO, "s.txt", repo_type="dataset")).read_bytes() == b"secret"


def test_update_repo_settings_gated(
    loopback_hub: LoopbackHub, api: HfApi, anonymous: HfApi, dataset: str, tmp_path: Path
) -> None:
    api.upload_file(path_or_fileobj=b"g", path_in_repo="g.txt", repo_id=dataset, repo_type="dataset")
    api.update_repo_settings(dataset, gated="manual", repo_type="dataset")
    assert loopback_hub.repo(dataset).gated == "manual"
    assert api.dataset_info(dataset).gated == "manual"

    assert Path(hf_hub_download(dataset, "g.txt", repo_type="dataset")).read_bytes() == b"g"
    with pytest.raises(GatedRepoError):
        hf_hub_download(
            dataset, "g.txt", repo_type="dataset", token=False, cache_dir=tmp_path / "empty-cache"
        )
    with pytest.raises(GatedRepoError):
        anonymous.file_exists(dataset, "g.txt", repo_type="dataset")
    assert anonymous.dataset_info(dataset).gated == "manual"  # metadata stays public

    api.update_repo_settings(dataset, gated=False, repo_type="dataset")
    assert loopback_hub.repo(dataset).gated is False


def test_fail_next_on_commits_is_not_retried_by_huggingface_hub(
    loopback_hub: LoopbackHub, api: HfApi, dataset: str
) -> None:
    loopback_hub.fail_next(2, 503, method="POST", path_contains="/commit/")
    for _ in range(2):
        with pytest.raises(HfHubHTTPError) as error:
            api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=dataset, repo_type="dataset")
        assert error.value.response.status_code == 503
        assert error.value.response.headers["Retry-After"] == "0"
    assert _commit_posts(loopback_hub) == [503, 503]  # one request per call: create_commit does not retry
    assert len(loopback_hub.commits(dataset)) == 1

    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=dataset, repo_type="dataset")
    assert _commit_posts(loopback_hub) == [503, 503, 200]
    assert loopback_hub.faults_pending == 0
    assert loopback_hub.files(dataset)["x.txt"] == b"x"


def test_endpoints_with_backoff_recover_from_an_injected_failure(
    loopback_hub: LoopbackHub, api: HfApi, dataset: str
) -> None:
    loopback_hub.fail_next(1, 503, path_contains="/preupload/")
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=dataset, repo_type="dataset")
    preuploads = [r.status for r in loopback_hub.requests if "/preupload/" in r.path]
    assert preuploads == [503, 200]  # http_backoff retried (after ~1 s)
    assert loopback_hub.files(dataset)["x.txt"] == b"x"

    loopback_hub.fail_next(1, 429, path_contains="whoami")
    with pytest.raises(HfHubHTTPError) as error:
        api.whoami()
    assert error.value.response.status_code == 429


def test_hang_next_makes_the_client_time_out(loopback_hub: LoopbackHub, api: HfApi, dataset: str) -> None:
    loopback_hub.hang_next(1, 3.0, method="GET", path_contains=f"/api/datasets/{dataset}")
    started = time.monotonic()
    with pytest.raises(httpx2.TimeoutException):
        api.dataset_info(dataset, timeout=0.3)
    assert time.monotonic() - started < 2.0
    started = time.monotonic()
    assert api.dataset_info(dataset, timeout=1.0).id == dataset  # only one request was held
    assert time.monotonic() - started < 1.0


def test_stop_refuses_connections_and_start_keeps_state(
    loopback_hub: LoopbackHub, api: HfApi, dataset: str
) -> None:
    url = loopback_hub.url
    api.upload_file(path_or_fileobj=b"kept", path_in_repo="kept.txt", repo_id=dataset, repo_type="dataset")
    head = loopback_hub.commits(dataset)[-1].oid

    loopback_hub.stop()
    assert not loopback_hub.running
    with pytest.raises(httpx2.ConnectError):
        api.dataset_info(dataset)

    loopback_hub.start()
    assert loopback_hub.url == url
    assert api.dataset_info(dataset).sha == head
    assert Path(hf_hub_download(dataset, "kept.txt", repo_type="dataset")).read_bytes() == b"kept"


def test_the_request_log_records_every_answer_in_order(loopback_hub: LoopbackHub, api: HfApi) -> None:
    api.create_repo(REPO, repo_type="dataset")
    api.upload_file(path_or_fileobj=b"1", path_in_repo="a b.txt", repo_id=REPO, repo_type="dataset")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "missing.txt", repo_type="dataset")

    assert [(r.method, r.path, r.status) for r in loopback_hub.requests] == [
        ("POST", "/api/repos/create", 200),
        ("POST", f"/api/datasets/{REPO}/preupload/main", 200),
        ("POST", f"/api/datasets/{REPO}/commit/main", 200),
        ("HEAD", f"/datasets/{REPO}/resolve/main/missing.txt", 404),
    ]
    assert {r.token for r in loopback_hub.requests} == {DUMMY_TOKEN}


def test_unknown_routes_are_404s_naming_the_route(
    loopback_hub: LoopbackHub, api: HfApi, dataset: str
) -> None:
    response = get_session().get(f"{loopback_hub.url}/api/not-a-route")
    assert response.status_code == 404
    assert "GET /api/not-a-route" in response.json()["error"]
    with pytest.raises(
        HfHubHTTPError, match="no route for GET /api/datasets/evalsink-org/results/discussions"
    ):
        list(api.get_repo_discussions(dataset, repo_type="dataset"))


def test_an_lfs_file_line_is_refused_with_a_clear_message(loopback_hub: LoopbackHub, dataset: str) -> None:
    payload = b"\n".join(
        json.dumps(line).encode()
        for line in (
            {"key": "header", "value": {"summary": "lfs", "description": ""}},
            {"key": "lfsFile", "value": {"path": "big.bin", "algo": "sha256", "oid": "0" * 64, "size": 1}},
        )
    )
    response = get_session().post(
        f"{loopback_hub.url}/api/datasets/{dataset}/commit/main",
        content=payload,
        headers={"Authorization": f"Bearer {DUMMY_TOKEN}", "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 400
    assert "LFS" in response.json()["error"]
    assert len(loopback_hub.commits(dataset)) == 1


def test_a_readme_with_broken_yaml_is_refused(loopback_hub: LoopbackHub, api: HfApi, dataset: str) -> None:
    pytest.importorskip("yaml")
    with pytest.raises(ValueError, match=r"Invalid metadata in README\.md"):
        api.upload_file(
            path_or_fileobj=b"---\nlicense: [mit\n---\n",
            path_in_repo="README.md",
            repo_id=dataset,
            repo_type="dataset",
        )
    assert len(loopback_hub.commits(dataset)) == 1


def test_delete_repo_and_reset(loopback_hub: LoopbackHub, api: HfApi, dataset: str) -> None:
    api.delete_repo(dataset, repo_type="dataset")
    assert not loopback_hub.repo(dataset).exists
    with pytest.raises(RepositoryNotFoundError):
        api.dataset_info(dataset)
    api.delete_repo(dataset, repo_type="dataset", missing_ok=True)

    api.create_repo(dataset, repo_type="dataset")
    loopback_hub.fail_next(1, 500)
    loopback_hub.reset()
    assert loopback_hub.requests == []
    assert loopback_hub.faults_pending == 0
    with pytest.raises(KeyError, match="no repositories exist"):
        loopback_hub.commits(dataset)


def test_strict_namespaces_forbid_foreign_namespaces(loopback_hub: LoopbackHub, api: HfApi) -> None:
    loopback_hub.strict_namespaces = True
    with pytest.raises(HfHubHTTPError) as error:
        api.create_repo("someone-else/results", repo_type="dataset")
    assert error.value.response.status_code == 403
    api.create_repo(REPO, repo_type="dataset")
    assert loopback_hub.repo(REPO).exists
