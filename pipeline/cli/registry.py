"""``xray-seg models``: look at and move the registered model's aliases (MLflow registry).

Examples::

    xray-seg models list                                  # versions, aliases, validation / test Dice
    xray-seg models show chest-xray-lung-seg @champion    # one version: run, settings, promotion tags
    xray-seg models promote chest-xray-lung-seg 4         # make version 4 the champion
    xray-seg models rollback chest-xray-lung-seg          # back to the previous champion
    xray-seg models compare chest-xray-lung-seg @champion 5 --data /data/jsrt --promote   # same images for both
    xray-seg models replay models/mlflow-pending/RUN_ID   # send what a training kept during a server outage
    xray-seg models --tracking-uri http://mlflow:5000 list

The store is found the way a training finds it: ``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else the
SQLite store a training run from the current folder writes (``./eval/mlruns.db``, from a bundle folder, or
``./mlruns.db``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pipeline.tracking.naming import CHAMPION, DEFAULT_MODEL_NAME

__all__ = ["add_parser", "run_models"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``models`` and its sub-commands ``list``, ``show``, ``promote`` and ``rollback``."""
    parser = subparsers.add_parser(
        "models",
        help="list, show, promote and roll back registered models (MLflow registry)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store; default $MLFLOW_TRACKING_URI, else ./eval/mlruns.db or ./mlruns.db (current folder)",
    )
    actions = parser.add_subparsers(dest="models_command", metavar="ACTION")

    p = actions.add_parser("list", help="versions with their aliases and metrics")
    p.add_argument("name", nargs="?", default=DEFAULT_MODEL_NAME, help=f"registered model ({DEFAULT_MODEL_NAME})")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = actions.add_parser("show", help="one version: run, settings, promotion decision")
    p.add_argument("name", nargs="?", default=DEFAULT_MODEL_NAME)
    p.add_argument("ref", nargs="?", default=f"@{CHAMPION}", help="version number or @alias (default @champion)")

    p = actions.add_parser("promote", help="point an alias (default champion) at a version")
    p.add_argument("name")
    p.add_argument("version", help="version number or @alias")
    p.add_argument("--alias", default=CHAMPION, help="alias to move (default champion)")
    p.add_argument("--reason", default="manual promotion", help="recorded on the version (tag champion.reason)")

    p = actions.add_parser("rollback", help="make the previous champion (or --to VERSION) the champion again")
    p.add_argument("name", nargs="?", default=DEFAULT_MODEL_NAME)
    p.add_argument("--to", dest="to_version", default=None, help="version to roll back to (default: previous champion)")

    p = actions.add_parser(
        "compare", help="evaluate two versions on one folder of images and masks; promote the better one"
    )
    p.add_argument("name")
    p.add_argument("reference", help="version number or @alias compared against (e.g. @champion)")
    p.add_argument("candidate", help="version number or @alias that may replace it")
    p.add_argument("--data", required=True, type=Path, help="folder with images/ and masks/ (paired by file name)")
    p.add_argument("--promote", action="store_true", help="make the candidate champion if its Dice is higher")
    p.add_argument("--device", default=None, help="cuda or cpu (default: CUDA when available)")

    p = actions.add_parser("replay", help="send the tracking records a training kept while the server was down")
    p.add_argument("folder", type=Path, help="the folder the training named (<ckpt_dir>/mlflow-pending/<run id>)")

    parser.set_defaults(func=run_models, _parser=parser)
    return parser


def _table(rows: list[dict[str, Any]]) -> str:
    columns = ["version", "aliases", "val_mean_dice", "test_mean_dice", "network", "run_name", "created"]
    cells = [
        [
            row["version"],
            ",".join(row["aliases"]) or "-",
            row["tags"].get("val_mean_dice", "-")[:8],
            row["tags"].get("test_mean_dice", "-")[:8],
            row["tags"].get("network_name", "-"),
            row["tags"].get("run_name", "-"),
            row["created"],
        ]
        for row in rows
    ]
    widths = [max(len(str(x)) for x in [c, *(r[i] for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(str(x).ljust(w) for x, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def run_models(args: argparse.Namespace) -> int:
    """Run one ``models`` action; returns the exit code."""
    from mlflow.exceptions import MlflowException

    from pipeline.tracking import (
        bound_http_requests,
        default_tracking_uri,
        describe_version,
        get_client,
        get_version,
        list_versions,
        promote,
        replay_records,
        rollback,
    )
    from pipeline.tracking.store import STORE_CANDIDATES

    if not args.models_command:
        args._parser.print_help()
        return 2
    uri = args.tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        print(f"error: no MLflow store at {uri} (looked for {' and '.join(STORE_CANDIDATES)} in {Path.cwd()}); run "
              "from the folder you trained in (the bundle folder), or pass --tracking-uri / set MLFLOW_TRACKING_URI.")
        return 1
    bound_http_requests()  # a server that is down fails in seconds, not minutes
    client = get_client(uri)
    try:
        if args.models_command == "list":
            rows = list_versions(args.name, client=client)
            print(json.dumps(rows, indent=2) if args.json else _table(rows))
        elif args.models_command == "show":
            print(json.dumps(describe_version(get_version(client, args.name, args.ref)), indent=2))
        elif args.models_command == "promote":
            promote(args.name, args.version, alias=args.alias, reason=args.reason, client=client)
            print(f"{args.name}: @{args.alias} -> version {get_version(client, args.name, '@' + args.alias).version}")
        elif args.models_command == "rollback":
            version = rollback(args.name, to_version=args.to_version, client=client)
            print(f"{args.name}: @{CHAMPION} -> version {version}")
        elif args.models_command == "compare":
            from pipeline.inference import load_predictor
            from pipeline.tracking.comparison import compare_versions

            def load(uri: str) -> Any:
                return load_predictor(uri, device=args.device, tracking_uri=str(client.tracking_uri))

            result = compare_versions(client, args.name, args.reference, args.candidate, args.data, load,
                                      promote_if_better=args.promote)
            print(result.reason)
            if result.promoted:
                print(f"{args.name}: @{CHAMPION} -> version {result.candidate}")
            elif args.promote:
                print(f"{args.name}: champion unchanged")
        elif args.models_command == "replay":
            sent = replay_records(args.folder, client)
            print(f"sent {sent} kept tracking records from {args.folder} to {uri}")
    except FileNotFoundError as err:
        print(f"error: {err.filename}: no kept tracking records there (records.jsonl); give the folder the training "
              "named in its log.")
        return 1
    except (MlflowException, ValueError) as err:
        print(f"error: {err}")
        return 1
    return 0
