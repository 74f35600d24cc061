"""``airflow resilience …`` commands (provider-info ``cli`` key). Definitions only; bodies load lazily."""

from __future__ import annotations

from airflow.cli.cli_config import ARG_OUTPUT, ActionCommand, Arg, GroupCommand, lazy_load_command

_DAG = Arg(("dag_id",), help="DAG id")
_RUN = Arg(("run_id",), help="DAG run id")
_TASK = Arg(("task_id",), help="Task id")
_MAP = Arg(("--map-index",), type=int, default=-1, help="Map index of a mapped task instance (default -1)")
_YES = Arg(("-y", "--yes"), action="store_true", default=False, help="Do not ask for confirmation")
#: Documents (one JSON value): JSON, or YAML through Airflow's console. Listings take Airflow's ARG_OUTPUT.
_DOC_OUTPUT = Arg(("-o", "--output"), choices=("json", "yaml"), default="json", metavar="(json, yaml)",
                  help="Output format. Allowed values: json, yaml (default: json)")


def _drill_args() -> tuple[Arg, ...]:
    """The drill's options, declared once in ``airflow_resilience.drills.cli.add_arguments``."""
    import argparse

    from airflow_resilience.drills.cli import add_arguments

    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    args = []
    for action in parser._actions:
        kwargs = {"help": action.help, "default": action.default, "dest": action.dest}
        for name in ("type", "choices", "metavar"):
            if getattr(action, name):
                kwargs[name] = getattr(action, name)
        args.append(Arg(tuple(action.option_strings), **kwargs))
    return tuple(args)


def get_cli_commands() -> list[GroupCommand]:
    from airflow_resilience.airflow.cli_db import db_commands, migrate_command

    checkpoint = GroupCommand(
        name="checkpoint",
        help="Inspect or reset the checkpoint of a task instance",
        subcommands=(
            ActionCommand(
                name="show",
                help="Print the saved checkpoint (head and document) of a task instance as JSON or YAML",
                func=lazy_load_command("airflow_resilience.airflow.cli_commands.checkpoint_show"),
                args=(_DAG, _RUN, _TASK, _MAP, _DOC_OUTPUT),
            ),
            ActionCommand(
                name="reset",
                help="Delete the saved checkpoint of a task instance so its next attempt starts from scratch",
                func=lazy_load_command("airflow_resilience.airflow.cli_commands.checkpoint_reset"),
                args=(_DAG, _RUN, _TASK, _MAP, _YES),
            ),
        ),
    )
    wm_name = Arg(("name",), help="Watermark name, e.g. orders.updated_at")
    force = Arg(
        ("--force",),
        action="store_true",
        default=False,
        help="Also when a running attempt holds the name: that attempt is fenced off (its commit is refused)",
    )

    def wm(name: str, help: str, *args: Arg) -> ActionCommand:
        return ActionCommand(
            name=name,
            help=help,
            func=lazy_load_command(f"airflow_resilience.airflow.cli_commands.watermark_{name}"),
            args=args,
        )

    watermark = GroupCommand(
        name="watermark",
        help="Inspect and correct watermarks (cross-run values that advance on success)",
        subcommands=(
            wm(
                "list",
                "List watermarks: value, version, holder",
                ARG_OUTPUT,
            ),
            wm(
                "get",
                "Print a watermark as JSON (value, version, who committed it, holder)",
                wm_name,
                Arg(("--history",), type=int, default=0, metavar="N", help="Also print the last N history entries"),
                _DOC_OUTPUT,
            ),
            wm(
                "set",
                "Set a watermark's value (JSON), audited; refuses to move it backwards unless --backwards",
                wm_name,
                Arg(("value",), help="The value as JSON, e.g. 42 or '\"2024-01-01T00:00:00+00:00\"'"),
                Arg(("--backwards",), action="store_true", default=False, help="Allow a value before the current one"),
                force,
            ),
            wm("reset", "Forget a watermark's value (the next run reads its default), audited", wm_name, _YES, force),
            migrate_command("Create or upgrade the watermark tables (what `airflow db migrate` does for them)"),
        ),
    )
    drill = ActionCommand(
        name="drill",
        help="Disrupt real runs on an embedded Airflow, with and without airflow-resilience, and report the cost",
        func=lazy_load_command("airflow_resilience.drills.cli.drill_command"),
        args=_drill_args(),
    )
    report = ActionCommand(
        name="report",
        help="What infrastructure cost over a window: failed attempts by cause and verdict, budgets, compute redone vs saved",
        func=lazy_load_command("airflow_resilience.airflow.cli_commands.report"),
        args=(
            Arg(("--since",), default="7d", metavar="WINDOW", help="Window: <n><m|h|d|w>, e.g. 1h, 24h, 7d (default 7d)"),
            Arg(("--dag-id",), default=None, help="Only this DAG"),
            ARG_OUTPUT,
        ),
    )
    return [
        GroupCommand(
            name="resilience", help="airflow-resilience commands",
            subcommands=(checkpoint, watermark, report, drill, *db_commands()),
        )
    ]
