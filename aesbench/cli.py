"""The `aesbench` command: tasks, models, eval, suite, leaderboard."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import click
import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import __version__, distributed
from .adapter import load_model, model_listing, require
from .errors import AesbenchError
from .judges import check_judge, judge_spec
from .leaderboard import render_csv, render_markdown
from .options import FALSE, TRUE
from .runs import evaluate, load_results
from .progress import console, progress_bars
from .recipes import RECIPES
from .sizes import task_size
from .task import check_safe_name, load_task, task_index

out = Console(markup=False)  # no markup, like progress.console

TINY_TASKS = ("tiny-ava-score", "tiny-ava-comment", "tiny-pccd-suggest", "tiny-flickr-aes-piaa", "tiny-art-score")
BUILTIN_MODELS = ("handcrafted", "constant", "random")


class Group(click.Group):
    """Turns AesbenchError into one line on stderr and exit code 2, and Ctrl-C into a resume hint."""

    def invoke(self, ctx):
        try:
            result = super().invoke(ctx)
        except AesbenchError as e:
            console.print(Text.assemble(("error:", "bold red"), f" {e}"), highlight=False, soft_wrap=True)
            distributed.finish(ok=False)
            sys.exit(2)
        except KeyboardInterrupt:
            console.print("interrupted: what was finished is saved (an eval resumes when run again)")
            distributed.finish(ok=False)
            sys.exit(130)
        distributed.finish()  # under a launcher the processes leave together
        return result


def _model_options(pairs: tuple[str, ...]) -> dict:
    """key=value pairs (values read as YAML scalars) for --model-arg and --judge-arg."""
    options = {}
    for pair in pairs:
        if "=" not in pair:
            raise AesbenchError(f"option {pair!r} must look like key=value")
        key, value = pair.split("=", 1)
        parsed = yaml.safe_load(value)
        if isinstance(parsed, bool) and value.strip().lower() not in TRUE | FALSE:
            parsed = value  # YAML's on/off: left as text, so a boolean option refuses it (options.parse_bool)
        options[key.strip()] = parsed
    return options


def _summary(results: dict, output: Path) -> None:
    table = Table(title=f"{results['task']} · {results['model']} · n={results['n']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column(f"{results['bootstrap']['level']:.0%} CI", justify="right")
    for name, value in results["metrics"].items():
        ci = results["ci95"].get(name)
        table.add_row(name, f"{value:.4f}", f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")
    for name, reason in results["undefined"].items():
        table.add_row(name, "undefined", reason)
    out.print(table)
    if results["skipped"]:
        console.print(f"{len(results['skipped'])} skipped (ids and reasons in {output / 'results.json'})")
    console.print(f"results: {output / 'results.json'}", highlight=False)


FEATURE_CACHE_OPTION = click.option(
    "--feature-cache",
    type=click.Path(path_type=Path),
    envvar="AESBENCH_FEATURE_CACHE",
    help="Folder for frozen-backbone features, reused across runs, PIAA repeats and heads (models that have"
    " a frozen backbone; keyed by image, preprocessing and weights). Env: AESBENCH_FEATURE_CACHE.",
)


PLOTS_OPTION = click.option(
    "--plots/--no-plots",
    default=True,
    show_default=True,
    help="Draw the run's plots into RUN/plots/ (`aesbench plot RUN` redraws them).",
)


def _report_plots(run: Path, written: list[Path]) -> None:
    console.print(
        f"plots: {', '.join(str(p) for p in written)}"
        if written
        else f"plots: none for {run} (nothing usable to draw)",
        highlight=False,
        soft_wrap=True,
    )


def _use_feature_cache(model, folder: Path, quiet: bool) -> None:
    if not model.use_feature_cache(folder) and not quiet:
        console.print(
            f"note: model {model.name!r} has no frozen backbone to cache; --feature-cache has no effect on it",
            highlight=False,
            soft_wrap=True,
        )


@click.group(cls=Group)
@click.version_option(__version__, prog_name="aesbench")
def cli():
    """Benchmark image aesthetics assessment models on the standard protocols, offline."""


INCLUDE_PATH_OPTION = click.option(
    "--include-path",
    "include",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A folder of your own task YAMLs (searched recursively; a task is named by its file name). Repeatable.",
)


@cli.command()
@click.argument("name", required=False)
@click.option("--data-root", type=click.Path(path_type=Path), help="Dataset root for real-dataset tasks.")
@INCLUDE_PATH_OPTION
def tasks(name, data_root, include):
    """List the tasks, or show one in full."""
    if name:
        task = load_task(name, include)
        definition = task.to_dict()
        root = str(task.dataset.get("root", "."))
        if not sys.stdout.isatty() and "${" not in root and not Path(root).is_absolute():
            # a template saved anywhere (`aesbench tasks NAME > my.yaml`) still finds the task's data
            definition["dataset"] = {**task.dataset, "root": str((task.path.parent / root).resolve())}
        click.echo(
            f"# aesbench task, from {task.path}\n"
            + yaml.safe_dump(definition, sort_keys=False, allow_unicode=True, width=float("inf")),
            nl=False,
        )
        return
    table = Table()
    for col in ("task", "family", "dataset", "metrics", "size"):
        table.add_column(col, no_wrap=col == "task")
    for task_path in task_index(include).values():
        task = load_task(str(task_path))
        try:
            task.resolve_root(data_root if "${" in str(task.dataset.get("root", "")) else None)
            size = task_size(task)  # remembered while the task and label files are unchanged (sizes.py)
        except AesbenchError:
            env = re.findall(r"\$\{(\w+)\}", str(task.dataset.get("root", "")))
            size = f"needs ${env[0]}" if env else "needs data"
        metrics = task.metrics if len(task.metrics) <= 3 else task.metrics[:2] + [f"… {len(task.metrics)} in all"]
        table.add_row(task.name, task.family, task.dataset["format"], ", ".join(metrics), size)
    out.print(table)


@cli.command()
def models():
    """List the registered models and what they can do."""
    table = Table()
    for col in ("model", "capabilities", "description"):
        table.add_column(col)
    for name, (capabilities, doc) in model_listing().items():
        table.add_row(name, ", ".join(sorted(capabilities)), doc)
    out.print(table)


@cli.command("eval")
@click.option("--task", "task_name", required=True, help="Task name or path to a task YAML.")
@click.option(
    "--model",
    "model_name",
    help="Registered model name, checkpoint folder, path/to/file.py:Class or package.module:Class.",
)
@click.option("--predictions", type=click.Path(path_type=Path), help="Score a predictions JSONL made elsewhere.")
@click.option(
    "--name", "run_name", help="With --predictions: the model name recorded and shown (default: the file's stem)."
)
@click.option("--output", type=click.Path(path_type=Path), required=True, help="Run folder (resumed if it exists).")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N items (PIAA: people).")
@click.option("--seed", default=0, show_default=True, help="Seed for the model (protocol seeds live in the task).")
@click.option("--data-root", type=click.Path(path_type=Path), help="Dataset root for real-dataset tasks.")
@click.option("--model-arg", multiple=True, help="Model option key=value (repeatable).")
@click.option("--judge", help="Suggest tasks: the judge to use instead of the task's (recorded with each verdict).")
@click.option("--judge-arg", multiple=True, help="Judge option key=value (repeatable).")
@FEATURE_CACHE_OPTION
@INCLUDE_PATH_OPTION
@PLOTS_OPTION
@click.option("--quiet", is_flag=True, help="No progress bars or summary table.")
def eval_cmd(
    task_name,
    model_name,
    predictions,
    run_name,
    output,
    batch_size,
    limit,
    seed,
    data_root,
    model_arg,
    judge,
    judge_arg,
    feature_cache,
    include,
    plots,
    quiet,
):
    """Evaluate a model (or a predictions file) on a task; re-running resumes."""
    distributed.start()  # under a launcher: before the model is built, so each process takes its own GPU
    quiet = quiet or distributed.rank() != 0  # rank 0 reports
    if (model_name is None) == (predictions is None):
        raise AesbenchError("give exactly one of --model and --predictions")
    if run_name is not None:
        if predictions is None:
            raise AesbenchError("--name applies to --predictions runs (a model run is named after its model)")
        check_safe_name(run_name, "--name")
    task = load_task(task_name, include)
    listed = model_listing().get(model_name) if model_name else None
    if listed is not None and listed[0]:  # before building it: a model that cannot do the task never asks for its extra
        require(SimpleNamespace(name=model_name, capabilities=listed[0]), task.capability, task.name)
    if judge or judge_arg:
        if task.family != "suggest":
            raise AesbenchError(f"--judge applies to suggest tasks; {task.name!r} is a {task.family} task")
        own, own_options = judge_spec(task.protocol.judge)
        name = judge or own
        # --judge-arg alone adds to the task's judge options (its folder, say); --judge NAME starts afresh
        task.protocol.judge = {"name": name, **(own_options if name == own else {}), **_model_options(judge_arg)}
        check_judge(task.protocol.judge)
    progress, track = progress_bars(quiet)
    model = load_model(model_name, _model_options(model_arg), seed) if model_name else None
    if model is not None and feature_cache:
        _use_feature_cache(model, feature_cache, quiet)
    with progress:
        results = evaluate(
            task,
            output,
            model=model,
            model_name=run_name,
            predictions=predictions,
            seed=seed,
            batch_size=batch_size,
            limit=limit,
            data_root=data_root,
            track=track,
            plots=plots,
        )
    if results is None:  # not rank 0
        return
    if plots and not quiet:
        from .plots import PLOTS

        _report_plots(output, sorted((output / PLOTS).glob("*.png")))  # evaluate drew them
    if not quiet:
        _summary(results, output)


@cli.command()
@click.option(
    "--output", type=click.Path(path_type=Path), required=True, help="Folder for OUTPUT/<task>/<model>/ runs."
)
@click.option("--tasks", "task_names", default=",".join(TINY_TASKS), show_default=True, help="Comma-separated tasks.")
@click.option(
    "--models", "model_names", default=",".join(BUILTIN_MODELS), show_default=True, help="Comma-separated models."
)
@click.option("--seed", default=0, show_default=True)
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1))
@FEATURE_CACHE_OPTION
@INCLUDE_PATH_OPTION
@PLOTS_OPTION
@click.option("--quiet", is_flag=True)
def suite(output, task_names, model_names, seed, batch_size, feature_cache, include, plots, quiet):
    """Run several models on several tasks (default: the tiny suite with the built-in baselines)."""
    distributed.start()
    quiet = quiet or distributed.rank() != 0
    progress, track = progress_bars(quiet)
    table = Table(title="suite")
    for col in ("task", "model", "n", "headline"):
        table.add_column(col)
    with progress:
        for task_name in task_names.split(","):
            task = load_task(task_name.strip(), include)
            for model_name in model_names.split(","):
                model = load_model(model_name.strip(), seed=seed)
                if task.capability not in model.capabilities:
                    continue
                if feature_cache:
                    _use_feature_cache(model, feature_cache, quiet)
                run = output / check_safe_name(task.name, "task name") / check_safe_name(model.name, "model name")
                results = evaluate(task, run, model=model, seed=seed, batch_size=batch_size, track=track, plots=plots)
                if results is None:  # not rank 0
                    continue
                head = task.metrics[0]
                value = results["metrics"].get(head)
                table.add_row(
                    task.name,
                    model.name,
                    str(results["n"]),
                    f"{head} {value:.4f}" if value is not None else f"{head} undefined",
                )
    if not quiet:
        out.print(table)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["markdown", "csv", "html"]),
    default="markdown",
    show_default=True,
    help="html: one self-contained page (sortable tables, links to each run's plots).",
)
@click.option("--reported/--no-reported", default=True, show_default=True, help="Include numbers reported by papers.")
@click.option("--output", type=click.Path(path_type=Path), help="Write to a file instead of stdout.")
def leaderboard(paths, fmt, reported, output):
    """Render tables per task from results records (default folder: results/)."""
    paths = list(paths) or [Path("results")]
    for p in paths:
        if not p.exists():
            raise AesbenchError(f"{p} not found: give folders holding results.json records")
    records = load_results(paths)
    if fmt == "html":
        from .leaderboard_html import render_html

        text = render_html(records, reported, base=Path(output).parent if output else Path("."))
    else:
        text = (render_markdown if fmt == "markdown" else render_csv)(records, reported)
    if output:
        target = Path(output)
        if target.exists() and any(os.path.samefile(target, r["_path"]) for r in records):
            raise AesbenchError(f"--output {target} is one of the results records read; choose another file")
        try:
            target.write_text(text, encoding="utf-8")
        except OSError as e:  # a folder, a missing parent, a read-only place
            raise AesbenchError(f"cannot write {target}: {e.strerror or type(e).__name__}") from None
    else:
        click.echo(text)


@cli.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--data-root",
    type=click.Path(path_type=Path),
    help="Dataset root, where the run's own is not here (score tasks read their labels for the scatter).",
)
def plot(runs, data_root):
    """Draw (or redraw) the plots of runs into RUN/plots/, from each run's results.json and predictions.jsonl."""
    from .plots import draw  # matplotlib is imported only when plots are drawn
    from .rundata import run_folders

    for run in run_folders(list(runs)):
        folder = run.parent if run.name == "results.json" else run
        _report_plots(folder, draw(folder, data_root))


@cli.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--metric", help="The metric to compare (with more than two runs: the matrix's; default: the task's first)."
)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--data-root", type=click.Path(path_type=Path), help="Dataset root, where the runs' own is not here.")
def compare(runs, metric, fmt, data_root):
    """Paired comparison of runs of one task: A − B, paired bootstrap CI and p-value per metric; with more
    than two runs, the matrix of pairwise differences in one metric."""
    from .compare import compare_many, compare_two

    if len(runs) < 2:
        raise AesbenchError("give at least two run folders to compare")
    if len(runs) == 2:
        rows, about = compare_two(runs[0], runs[1], data_root, metric)
        if fmt == "json":
            keys = ("a", "b", "delta", "ci95", "p_value")
            click.echo(json.dumps({name: {k: row[k] for k in keys} for name, row in rows.items()}, indent=2))
        else:
            _compare_table(rows, about)
        return
    matrix, about = compare_many(list(runs), metric, data_root)
    if fmt == "json":
        click.echo(json.dumps(matrix, indent=2))
    else:
        _matrix_table(matrix, about)


def _compare_table(rows: dict, about: dict) -> None:
    from .compare import format_p

    a, b = about["labels"]
    table = Table(
        title=f"{about['task']}: A = {a}, B = {b} · paired bootstrap, {about['resamples']} resamples"
        f" of {'people' if about['family'] == 'piaa' else 'items'}, seed {about['seed']}"
    )
    for col in ("metric", "A", "B", "A − B", f"{about['level']:.0%} CI of A − B", "p", "n"):
        table.add_column(col, justify="left" if col == "metric" else "right", no_wrap=True)
    recomputed, undefined = False, []
    for name, row in rows.items():
        if row["delta"] is None:
            table.add_row(name, "", "", "undefined", "", "", _n(row))
            undefined.append(f"{name}: {row['undefined'] or 'undefined in a run or on the items both scored'}")
            continue
        recomputed |= not row["same_units"]
        ci = f"[{row['ci95'][0]:+.3f}, {row['ci95'][1]:+.3f}]" if row["ci95"] else ""
        p = format_p(row["p_value"])
        table.add_row(name, f"{row['a']:.4f}", f"{row['b']:.4f}", f"{row['delta']:+.4f}", ci, p, _n(row))
    out.print(table)
    for line in undefined:
        console.print(line, highlight=False, soft_wrap=True)
    if recomputed:
        console.print(
            "note: the runs did not score the same items, so A and B are recomputed on the items both scored"
            " (n) and differ from the runs' own values",
            highlight=False,
            soft_wrap=True,
        )


def _n(row: dict) -> str:
    return "" if row["n"] is None else str(row["n"])


def _matrix_table(matrix: dict, about: dict) -> None:
    from .compare import format_p

    labels = matrix["runs"]
    table = Table(
        title=f"{about['task']}: {matrix['metric']}, row − column (p) · paired bootstrap, {about['resamples']}"
        f" resamples of {'people' if about['family'] == 'piaa' else 'items'}, seed {about['seed']}"
    )
    table.add_column("row − column")
    for label in labels:
        table.add_column(label, justify="right", no_wrap=True)
    for i, label in enumerate(labels):
        cells = []
        for j in range(len(labels)):
            delta, p = matrix["delta"][i][j], matrix["p_value"][i][j]
            cells.append(
                "·"
                if i == j
                else "undefined"
                if delta is None
                else f"{delta:+.3f}" + ("" if p is None else f" ({format_p(p)})")
            )
        table.add_row(label, *cells)
    out.print(table)


class RecipeGroup(click.Group):
    """`aesbench train NAME`: NAME is looked up in the recipe registry (recipes.RECIPES), which also holds the
    recipes installed packages declare (entry-point group aesbench.recipes: a click command)."""

    def list_commands(self, ctx):
        return RECIPES.names()

    def get_command(self, ctx, name):
        command = RECIPES.get(name)  # an unknown name: one line with the closest recipe
        if not isinstance(command, click.Command):
            raise AesbenchError(f"training recipe {name!r} is not a click command")
        return command


@cli.group(cls=RecipeGroup)
def train():
    """Train a model on a task's training split and save a checkpoint folder for --model."""


def main():
    cli()


@cli.command("describe")
@click.option(
    "--images", required=True, help="Folder of images, or a score task (name or YAML): its images and their scores."
)
@click.option(
    "--model", "model_name", required=True, help="A model that writes text from a prompt (capability comment)."
)
@click.option("--model-arg", multiple=True, help="Model option key=value (repeatable).")
@click.option(
    "--output", type=click.Path(path_type=Path), required=True, help="Descriptions JSONL (resumed if it exists)."
)
@click.option(
    "--rounds", default=1, show_default=True, type=click.IntRange(min=0), help="Critique-and-refine rounds per level."
)
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N images.")
@click.option("--seed", default=0, show_default=True, help="Seed for the model.")
@click.option("--data-root", type=click.Path(path_type=Path), help="Dataset root for real-dataset tasks.")
@click.option("--quiet", is_flag=True, help="No progress bar or summary.")
def describe_cmd(images, model_name, model_arg, output, rounds, limit, seed, data_root, quiet):
    """Write perception / cognition / emotion descriptions (generate, critique, refine); re-running resumes."""
    from .descriptions import describe

    if distributed.world_size() > 1:  # every process would append the same records to one file
        raise AesbenchError("describe runs in one process: start it without accelerate launch or torchrun")
    progress, track = progress_bars(quiet)
    model = load_model(model_name, _model_options(model_arg), seed)
    with progress:
        done = describe(images, model, output, rounds=rounds, seed=seed, limit=limit, data_root=data_root, track=track)
    if not quiet:
        console.print(
            f"{done['described']} of {done['images']} images described, {done['skipped']} skipped"
            f" ({done['resumed_from']} already in the file): {output}",
            highlight=False,
            soft_wrap=True,
        )
