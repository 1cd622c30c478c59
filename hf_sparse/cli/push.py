"""``hf-sparse push``: upload a saved model (or just its head) with its model card to the Hub.

Example:
    $ hf-sparse push runs/sparse me/sst2-minilm-sparse --private
"""

from __future__ import annotations

import argparse

from .errors import CLIError, describe

HELP = "upload a saved model (or only its head) with its model card to the Hub"

EPILOG = """\
examples:
  hf-sparse push runs/sparse me/sst2-sparse --private
  hf-sparse push runs/sparse me/sst2-sparse-head --head-only     # a few KB, pointing to the base model

Log in first with `hf auth login`, or pass --token / set HF_TOKEN."""


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
    p.set_defaults(run=run_push)
    return p


def hub_error(error: BaseException, repo_id: str) -> CLIError | None:
    """A one-line `CLIError` for a failure to reach or write to the Hub; None for anything else."""
    from huggingface_hub import errors

    if isinstance(error, errors.OfflineModeIsEnabled):
        return CLIError(f"cannot reach the Hub (offline mode: HF_HUB_OFFLINE is set); unset it to push {repo_id}")
    if isinstance(error, errors.LocalTokenNotFoundError):
        return CLIError("not logged in to the Hub: run `hf auth login`, or pass --token / set HF_TOKEN")
    if isinstance(error, errors.HfHubHTTPError):
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status in (401, 403):
            return CLIError(f"not allowed to write to {repo_id} (HTTP {status}): check your token and that you own "
                            "the namespace (run `hf auth whoami`)")
        return CLIError(f"the Hub refused the upload to {repo_id}: {describe(error)}")
    transport = _transport_errors()
    if isinstance(error, (ConnectionError, TimeoutError) + transport):
        return CLIError(f"cannot reach the Hub ({describe(error)}); check your connection and try again")
    return None


def _transport_errors() -> tuple:
    try:
        import httpx
    except ImportError:  # pragma: no cover - huggingface_hub >= 1.0 depends on httpx
        return ()
    return (httpx.TransportError,)


def run_push(args) -> int:
    from .models import hub_offline, load_checkpoint, require_checkpoint

    require_checkpoint(args.model_dir)
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
