"""``netdyn info RUN.nc``: print what a trajectory file holds."""
from __future__ import annotations

import argparse
import json

from netdyn.orbits.trajectory import summarize, summary_dict
from netdyn.commands._output import open_input
from netdyn.commands._report import divergence_words

_FIELDS = [
    ("path", "file"),
    ("file_size_bytes", "file size (bytes)"),
    ("map", "map"),
    ("optimizer", "optimizer"),
    ("lr", "lr"),
    ("record", "record"),
    ("steps", "recorded steps"),
    ("first_step", "first step"),
    ("last_step", "last step"),
    ("n_params", "recorded params"),
    ("final_loss", "final loss"),
    ("final_test_accuracy", "test accuracy"),
    ("diverged", "diverged"),
    ("complete", "complete"),
]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="summarise a recorded trajectory file")
    parser.add_argument("path", help="a netCDF trajectory written by netdyn")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    with open_input(args.path, min_steps=0) as ds:  # an incomplete file's warning is said by the CLI
        summary = summary_dict(summarize(ds))
        diverged = divergence_words(ds)
    if args.json:
        print(json.dumps(summary))
        return 0
    width = max(len(label) for _, label in _FIELDS)
    for key, label in _FIELDS:
        print(f"{label:<{width}}  {summary[key]}")
    if diverged:
        print(f"{'':<{width}}  ({diverged})")
    return 0
