"""``hf-sparse push``: upload a saved model (or just its head) with its model card to the Hub.

Every failure to reach the Hub (whichever HTTP package raises it: httpx and its forks, httpcore, requests, urllib3,
aiohttp, or the OS) becomes one line, ``cannot reach the Hub (...)``, that says what to set. ``--dry-run`` saves the
upload into a temporary folder, lists its files and prints the rendered card, and uploads nothing.

Example:
    $ hf-sparse push runs/sparse me/sst2-minilm-sparse --private
    $ hf-sparse push runs/sparse me/sst2-minilm-sparse --dry-run
"""

from __future__ import annotations

import argparse
import errno
import tempfile
from pathlib import Path

from ..constants import MODEL_CARD_NAME
from .errors import CLIError, describe

HELP = "upload a saved model (or only its head) with its model card to the Hub"

EPILOG = """\
examples:
  hf-sparse push runs/sparse me/sst2-sparse --private
  hf-sparse push runs/sparse me/sst2-sparse-head --head-only     # a few KB, pointing to the base model
  hf-sparse push runs/sparse me/sst2-sparse --dry-run            # list the files and print the card; upload nothing

Log in first with `hf auth login`, or pass --token / set HF_TOKEN."""

#: What to set when the Hub cannot be reached (the end of the one-line message).
NETWORK_HINT = ("check your connection; behind a proxy set HTTPS_PROXY, for a mirror set HF_ENDPOINT, and make "
                "sure HF_HUB_OFFLINE is not set; `--dry-run` shows what would be uploaded without the network")
#: Exception class names that mean the Hub could not be reached (connection, DNS, TLS, proxy, timeouts), as the
#: HTTP packages name them: httpx (and forks such as httpx2), httpcore, requests, urllib3, aiohttp.
NETWORK_ERROR_NAMES = frozenset({
    "TransportError", "NetworkError", "ConnectError", "ReadError", "WriteError", "CloseError",
    "TimeoutException", "ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout", "ProxyError",
    "RemoteProtocolError", "ProtocolError", "UnsupportedProtocol",
    "ConnectionError", "Timeout", "SSLError", "ConnectTimeoutError", "ReadTimeoutError", "NewConnectionError",
    "MaxRetryError", "NameResolutionError", "ClientConnectorError", "ClientConnectionError", "ServerTimeoutError",
    "ServerDisconnectedError",
})
#: Top-level packages (name prefixes: httpx2 and httpcore2, which huggingface_hub 2 uses, count) whose exceptions
#: with those names are network failures.
NETWORK_PACKAGES = ("httpx", "httpcore", "requests", "urllib3", "aiohttp", "h11", "h2")
#: OSError numbers that mean the network failed (not a local file problem).
NETWORK_ERRNOS = frozenset(getattr(errno, name) for name in (
    "ENETUNREACH", "EHOSTUNREACH", "ECONNREFUSED", "ECONNRESET", "ECONNABORTED", "ETIMEDOUT", "ENETDOWN",
    "EHOSTDOWN") if hasattr(errno, name))


def add_parser(commands) -> argparse.ArgumentParser:
    p = commands.add_parser("push", help=HELP, description=HELP[0].upper() + HELP[1:] + ".", epilog=EPILOG)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a model saved by `hf-sparse fit`")
    p.add_argument("repo_id", metavar="REPO_ID", help="the Hub repository, owner/name (created if needed)")
    p.add_argument("--private", action="store_true", help="create the repository as private (default: public)")
    p.add_argument("--head-only", action="store_true",
                   help="upload only the sparse head and a pointer to the base model (default: the whole model)")
    p.add_argument("--token", metavar="TOKEN", help="Hub token (default: the one from `hf auth login` or HF_TOKEN)")
    p.add_argument("--commit-message", metavar="TEXT", help="commit message (default: 'Upload model with sparse head')")
    p.add_argument("--revision", metavar="BRANCH", help="branch to push to (default: main)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the files that would be uploaded and print the model card; upload nothing (works "
                        "offline; a card already in the repository would be merged into it on a real push)")
    p.set_defaults(run=run_push)
    return p


def _chain(error: BaseException):
    """`error` and the exceptions it was raised from or during (each once)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def network_failure(error: BaseException) -> BaseException | None:
    """The exception in `error`'s chain that says the Hub could not be reached, or None.

    Recognised by class name and package (httpx, httpcore and their forks httpx2 / httpcore2, requests, urllib3,
    aiohttp), so that ``httpx2.ConnectError`` (huggingface_hub 2) counts whichever httpx is installed; and the OS's ConnectionError, TimeoutError, DNS failures
    (socket.gaierror) and OSErrors with a network errno.

    Example:
        >>> network_failure(RuntimeError("upload failed")) is None
        True
    """
    import socket

    for err in _chain(error):
        if isinstance(err, (ConnectionError, TimeoutError, socket.gaierror, socket.herror)):
            return err
        if isinstance(err, OSError) and err.errno in NETWORK_ERRNOS:
            return err
        for cls in type(err).__mro__:
            package = (cls.__module__ or "").split(".")[0]
            if cls.__name__ in NETWORK_ERROR_NAMES and package.startswith(NETWORK_PACKAGES):
                return err
    return None


def hub_error(error: BaseException, repo_id: str) -> CLIError | None:
    """A one-line `CLIError` for a failure to reach or write to the Hub; None for anything else."""
    from huggingface_hub import errors

    if isinstance(error, errors.OfflineModeIsEnabled):
        return CLIError(f"cannot reach the Hub (offline mode: HF_HUB_OFFLINE is set); unset it to push {repo_id}")
    if isinstance(error, errors.LocalTokenNotFoundError):
        return CLIError("not logged in to the Hub: run `hf auth login`, or pass --token / set HF_TOKEN")
    if isinstance(error, errors.HfHubHTTPError) and getattr(error, "response", None) is not None:
        status = getattr(error.response, "status_code", None)
        if status in (401, 403):
            return CLIError(f"not allowed to write to {repo_id} (HTTP {status}): check your token and that you own "
                            "the namespace (run `hf auth whoami`)")
        return CLIError(f"the Hub refused the upload to {repo_id}: {describe(error)}")
    found = network_failure(error)
    if found is not None:
        return CLIError(f"cannot reach the Hub to push {repo_id} ({type(found).__name__}: {describe(found)}); "
                        f"{NETWORK_HINT}")
    if isinstance(error, errors.HfHubHTTPError):
        return CLIError(f"the Hub refused the upload to {repo_id}: {describe(error)}")
    return None


def dry_run(model, repo_id: str, head_only: bool) -> str:
    """What a push would upload: the files (with sizes) and the rendered model card, as text; nothing is uploaded.

    Example:
        >>> print(dry_run(model, "me/sst2-sparse", head_only=False))
        Dry run: would upload 7 files (90.9 MB) to me/sst2-sparse ...
    """
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, head_only=head_only, card_kwargs={"repo_id": repo_id})
        files = sorted(p for p in Path(tmp).rglob("*") if p.is_file())
        total = sum(p.stat().st_size for p in files)
        lines = [f"Dry run: would upload {len(files)} files ({_size(total)}) to {repo_id}"
                 f"{' (the sparse head only)' if head_only else ''}; nothing was uploaded."]
        lines += [f"  {p.relative_to(tmp).as_posix():<40} {_size(p.stat().st_size):>10}" for p in files]
        card = Path(tmp) / MODEL_CARD_NAME
        if card.is_file():
            lines += ["", "The model card (README.md; a card already in the repository would be merged with it):",
                      "", card.read_text(encoding="utf-8")]
        else:
            lines += ["", "No model card (README.md) would be uploaded."]
    return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


def run_push(args) -> int:
    from .models import hub_offline, load_checkpoint, require_checkpoint

    require_checkpoint(args.model_dir)
    if getattr(args, "dry_run", False):
        model, _ = load_checkpoint(args.model_dir)
        print(dry_run(model, args.repo_id, args.head_only))
        return 0
    if hub_offline():
        raise CLIError(f"cannot reach the Hub (offline mode: HF_HUB_OFFLINE is set); unset it to push {args.repo_id}")
    model, _ = load_checkpoint(args.model_dir)
    kwargs = {"private": True if args.private else None, "head_only": args.head_only}
    kwargs.update({k: v for k, v in (("token", args.token), ("commit_message", args.commit_message),
                                     ("revision", args.revision)) if v is not None})
    try:
        commit = model.push_to_hub(args.repo_id, **kwargs)
    except Exception as err:  # noqa: BLE001 - Hub failures become one line; anything else is re-raised
        mapped = hub_error(err, args.repo_id)
        if mapped is None:
            raise
        raise mapped from err
    url = getattr(commit, "commit_url", None) or getattr(commit, "repo_url", None) or f"https://huggingface.co/{args.repo_id}"
    what = "the sparse head" if args.head_only else "the model"
    print(f"Pushed {what} with its model card to {args.repo_id}: {url}")
    return 0
