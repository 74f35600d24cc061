"""``airflow resilience …`` commands (provider-info ``cli`` key). Definitions only; bodies load lazily."""

from __future__ import annotations

from airflow.cli.cli_config import ActionCommand, Arg, GroupCommand, lazy_load_command

_DAG = Arg(("dag_id",), help="DAG id")
_RUN = Arg(("run_id",), help="DAG run id")
_TASK = Arg(("task_id",), help="Task id")
_MAP = Arg(("--map-index",), type=int, default=-1, help="Map index of a mapped task instance (default -1)")
_YES = Arg(("-y", "--yes"), action="store_true", default=False, help="Do not ask for confirmation")


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
    return [GroupCommand(name="resilience", help="airflow-resilience commands", subcommands=(checkpoint,))]
