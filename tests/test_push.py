"""`hf-sparse push`: every network failure, whichever package raises it, becomes the one-line "cannot reach the Hub"
message with what to set; `--dry-run` lists the files and prints the card, uploading nothing. Offline: huggingface_hub's
HfApi is patched (create_repo / upload_folder raise the errors a real network failure raises).
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from hf_sparse.cli import main
from hf_sparse.cli.push import hub_error, network_failure


def _error_class(name: str, module: str, base=Exception):
    """An exception class as another package defines it (e.g. httpx2.ConnectError, a fork of httpx)."""
    return type(name, (base,), {"__module__": module})


HTTPX2_CONNECT = _error_class("ConnectError", "httpx2._exceptions")


def _httpx():
    """The httpx that huggingface_hub uses (httpx2 for huggingface_hub 2, httpx for 1)."""
    import importlib

    for name in ("httpx2", "httpx"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    pytest.skip("neither httpx2 nor httpx is installed (huggingface_hub depends on one)")


def _network_errors() -> dict[str, BaseException]:
    import requests
    import urllib3.exceptions

    httpx = _httpx()
    wrapped = RuntimeError("upload failed")
    wrapped.__cause__ = HTTPX2_CONNECT("[Errno 111] Connection refused")
    return {
        "a fake httpx2.ConnectError": HTTPX2_CONNECT("[Errno -3] Temporary failure in name resolution"),
        "httpx.ConnectError": httpx.ConnectError("connection refused"),
        "httpx.ConnectTimeout": httpx.ConnectTimeout("timed out"),
        "httpx.ReadTimeout": httpx.ReadTimeout("The read operation timed out"),
        "httpx.RemoteProtocolError": httpx.RemoteProtocolError("Server disconnected without sending a response."),
        "a fake httpcore2.ConnectError": _error_class("ConnectError", "httpcore2._exceptions")("refused"),
        "a subclass of httpcore.ReadTimeout": _error_class("Slow", "mylib", _error_class("ReadTimeout", "httpcore"))(
            "slow"),
        "requests.ConnectionError": requests.exceptions.ConnectionError("Max retries exceeded"),
        "requests.ReadTimeout": requests.exceptions.ReadTimeout("read timed out"),
        "urllib3.NewConnectionError": urllib3.exceptions.NewConnectionError(None, "Failed to establish a connection"),
        "ConnectionRefusedError": ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
        "TimeoutError": TimeoutError("timed out"),
        "socket.gaierror": socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
        "OSError ENETUNREACH": OSError(errno.ENETUNREACH, "Network is unreachable"),
        "RuntimeError from httpx2.ConnectError": wrapped,
    }


NETWORK = list(_network_errors())


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from _tiny_models import tiny_sparse_model

    folder = tmp_path_factory.mktemp("push")
    tiny_sparse_model(folder).save_pretrained(folder / "model")
    return folder / "model"


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """HfApi that records calls; `fake_hub.fail = {"create_repo": err}` makes that call raise. Online mode."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import LocalEntryNotFoundError

    import hf_sparse.cli.models as cli_models

    state = SimpleNamespace(fail={}, calls=[], uploaded=tmp_path / "uploaded")

    def create_repo(self, repo_id, **kwargs):
        state.calls.append("create_repo")
        if "create_repo" in state.fail:
            raise state.fail["create_repo"]
        return SimpleNamespace(repo_id=repo_id)

    def hf_hub_download(self, *args, **kwargs):
        raise LocalEntryNotFoundError("no card yet")

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        state.calls.append("upload_folder")
        if "upload_folder" in state.fail:
            raise state.fail["upload_folder"]
        state.uploaded.mkdir()
        return SimpleNamespace(commit_url=f"https://hub.example/{repo_id}/commit/1")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "hf_hub_download", hf_hub_download)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(cli_models, "hub_offline", lambda: False)
    return state


def _push(capsys, *argv) -> tuple[int, str, str]:
    code = main(["push", *[str(a) for a in argv]])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("step", ["create_repo", "upload_folder"])
@pytest.mark.parametrize("which", NETWORK)
def test_every_network_failure_is_one_line_cannot_reach_the_hub(checkpoint, fake_hub, capsys, which, step):
    fake_hub.fail[step] = _network_errors()[which]
    code, out, err = _push(capsys, checkpoint, "me/tiny-sparse")
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("hf-sparse push: error: cannot reach the Hub to push me/tiny-sparse (")
    for needle in ("HTTPS_PROXY", "HF_ENDPOINT", "HF_HUB_OFFLINE", "--dry-run"):
        assert needle in lines[0]
    assert "unexpected" not in lines[0]
    assert fake_hub.calls[-1] == step


def test_the_message_names_the_failure_found_in_the_chain():
    error = _network_errors()["RuntimeError from httpx2.ConnectError"]
    assert type(network_failure(error)).__name__ == "ConnectError"
    message = str(hub_error(error, "me/x"))
    assert message.startswith("cannot reach the Hub to push me/x (ConnectError: [Errno 111] Connection refused); ")


@pytest.mark.parametrize("error", [ValueError("bad shard"), FileNotFoundError(errno.ENOENT, "No such file", "x.bin"),
                                   _error_class("ConnectError", "mydb")("not the Hub"), KeyError("k")])
def test_other_failures_are_not_called_network_failures(error):
    assert network_failure(error) is None
    assert hub_error(error, "me/x") is None


def test_http_errors_with_a_response_keep_their_own_messages():
    from huggingface_hub.errors import HfHubHTTPError

    httpx = _httpx()
    response = httpx.Response(403, request=httpx.Request("POST", "https://huggingface.co/api/repos/create"))
    message = str(hub_error(HfHubHTTPError("forbidden", response=response), "me/x"))
    assert message.startswith("not allowed to write to me/x (HTTP 403)")


def test_a_successful_push_still_prints_the_commit(checkpoint, fake_hub, capsys):
    code, out, err = _push(capsys, checkpoint, "me/tiny-sparse", "--private")
    assert (code, err) == (0, "")
    assert out.strip() == "Pushed the model with its model card to me/tiny-sparse: https://hub.example/me/tiny-sparse/commit/1"
    assert fake_hub.calls == ["create_repo", "upload_folder"]


def test_dry_run_lists_the_files_and_prints_the_card_and_uploads_nothing(checkpoint, fake_hub, capsys, monkeypatch):
    import hf_sparse.cli.models as cli_models

    monkeypatch.setattr(cli_models, "hub_offline", lambda: True)  # works offline too
    code, out, err = _push(capsys, checkpoint, "me/tiny-sparse", "--dry-run")
    assert (code, err) == (0, "")
    assert fake_hub.calls == [] and not fake_hub.uploaded.exists()
    lines = out.splitlines()
    assert lines[0].startswith("Dry run: would upload ") and lines[0].endswith(
        "to me/tiny-sparse; nothing was uploaded.")
    n = int(lines[0].split()[4])
    listed = [line.split()[0] for line in lines[1:1 + n]]
    # The listing is what save_pretrained writes for the push: the model's files and its card.
    for name in ("config.json", "model.safetensors", "README.md"):
        assert name in listed
    assert set(listed) >= {p.name for p in Path(checkpoint).iterdir() if p.suffix in (".json", ".safetensors")} - {
        "audit.json"}
    card = (Path(checkpoint) / "README.md").read_text(encoding="utf-8")
    assert "The model card (README.md" in out
    body = out.split("would be merged with it):\n\n", 1)[1]
    assert body.startswith("---")  # the card's metadata block
    assert "me/tiny-sparse" in body  # rendered for the target repository
    assert len(body) > 0.5 * len(card)


def test_dry_run_head_only_lists_the_head_instead_of_the_model(checkpoint, fake_hub, capsys):
    _, full, _ = _push(capsys, checkpoint, "me/tiny-sparse", "--dry-run")
    code, head, _ = _push(capsys, checkpoint, "me/tiny-sparse", "--dry-run", "--head-only")
    assert code == 0
    assert "(the sparse head only)" in head.splitlines()[0]
    def listed(out):
        return [line.split()[0] for line in out.splitlines()[1:1 + int(out.split()[4])]]

    assert "model.safetensors" in listed(full) and "sparse_head.safetensors" not in listed(full)
    assert "sparse_head.safetensors" in listed(head) and "model.safetensors" not in listed(head)
    assert fake_hub.calls == []


def test_push_help_documents_dry_run(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["push", "--help"])
    assert stop.value.code == 0
    assert "--dry-run" in capsys.readouterr().out
