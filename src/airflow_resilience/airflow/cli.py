"""``airflow resilience …`` commands (provider-info ``cli`` key). Definitions only; bodies load lazily."""

from __future__ import annotations

from airflow.cli.cli_config import ActionCommand, Arg, GroupCommand, lazy_load_command

_DAG = Arg(("dag_id",), help="DAG id")
_RUN = Arg(("run_id",), help="DAG run id")
_TASK = Arg(("task_id",), help="Task id")
_MAP = Arg(("--map-index",), type=int, default=-1, help="Map index of a mapped task instance (default -1)")
_YES = Arg(("-y", "--yes"), action="store_true", default=False, help="Do not ask for confirmation")


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
    checkpoint = GroupCommand(
        name="checkpoint",
        help="Inspect or reset the checkpoint of a task instance",
        subcommands=(
            ActionCommand(
                name="show",
                help="Print the saved checkpoint (head and document) of a task instance as JSON",
                func=lazy_load_command("airflow_resilience.airflow.cli_commands.checkpoint_show"),
                args=(_DAG, _RUN, _TASK, _MAP),
            ),
            ActionCommand(
                name="reset",
                help="Delete the saved checkpoint of a task instance so its next attempt starts from scratch",
                func=lazy_load_command("airflow_resilience.airflow.cli_commands.checkpoint_reset"),
                args=(_DAG, _RUN, _TASK, _MAP, _YES),
            ),
        ),
    )
    drill = ActionCommand(
        name="drill",
        help="Disrupt real runs on an embedded Airflow, with and without airflow-resilience, and report the cost",
        func=lazy_load_command("airflow_resilience.drills.cli.drill_command"),
        args=_drill_args(),
    )
    return [GroupCommand(name="resilience", help="airflow-resilience commands", subcommands=(checkpoint, drill))]
