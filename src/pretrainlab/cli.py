"""The pretrainlab command line."""

from __future__ import annotations

import json
import os
import sys
from importlib import resources
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pretrainlab.config import Design
from pretrainlab.config.schema import design_markdown, json_schema
from pretrainlab.design import load_design
from pretrainlab.errors import DesignError, PretrainlabError
from pretrainlab.pipeline import Pipeline
from pretrainlab.runs import DESIGN_COPY, METRICS, latest_stage_dir, read_manifest, run_root

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Design pretraining data, train on it, measure."
)
console = Console()
err = Console(stderr=True)

RUNS = typer.Option(Path("runs"), "--runs", help="Root folder of run directories.")


def _load(path: Path) -> Design:
    try:
        return load_design(path)
    except DesignError as e:
        where = f"{e.source}: " if e.source else ""
        for line in e.errors:
            err.print(f"[red]error[/red] {where}{line}", highlight=False)
        raise typer.Exit(2) from None


def _pipeline(design_path: Path, runs: Path) -> Pipeline:
    return Pipeline(_load(design_path), runs, console=err)


def _fail(message: str) -> NoReturn:
    """Print one error line (brackets in `message` shown as written, not as markup) and exit 1."""
    err.print(f"[red]error[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _train_source(run: Path, runs: Path) -> Path:
    """Where a RUN argument points: a design file's train stage, a run name under `runs`, or a path."""
    if run.is_file():
        return _pipeline(run, runs).stage_dir("train")
    return runs / run if run.parent == Path(".") and (runs / run).is_dir() else run


def _train_stage(run: Path, runs: Path) -> Path:
    """The finished train stage a RUN argument names (see `_train_source`), or exit 1 saying why none.

    A run directory's train stage is the one its design.yaml hashes to (as `pretrainlab report` reads
    it) when that one is finished, else the one train/latest names (the last training that finished,
    e.g. before code changes that alter the hash). Finding it takes the pipeline, hence it is done here
    and `export`/`evaluate` take the stage folder.
    """

    def finished(stage: Path) -> bool:
        return (read_manifest(stage) or {}).get("stage") == "train"

    source = _train_source(run, runs)
    if finished(source):
        return source
    if source.parent.name == "train":
        _fail(f"{source}: no finished training stage here (no manifest.json); train it first")
    if not source.is_dir():
        _fail(f"{source}: no such run directory (give a run name, runs/NAME or runs/NAME/train/HASH)")
    candidates = []
    if (source / DESIGN_COPY).is_file():
        try:
            candidates.append(Pipeline(load_design(source / DESIGN_COPY), source.parent).stage_dir("train"))
        except DesignError:
            pass  # a design the current code no longer accepts: fall back to train/latest
    latest = latest_stage_dir(source, "train")
    candidates += [] if latest is None else [latest]
    for stage in candidates:
        if finished(stage):
            return stage
    _fail(f"{source}: no finished training run in this run directory; train it first")


@app.command()
def init(
    name: str = typer.Argument(..., help="Design name (also the file name)."),
    out: Path | None = typer.Option(None, "--out", help="Where to write the design (default NAME.yaml)."),
) -> None:
    """Write a commented starter design."""
    path = out or Path(f"{name}.yaml")
    if path.exists():
        err.print(f"[red]error[/red] {path} exists; not overwriting it")
        raise typer.Exit(1)
    text = resources.files("pretrainlab").joinpath("templates/starter.yaml").read_text()
    path.write_text(text.replace("name: starter", f"name: {name}"))
    console.print(f"wrote {path}; next: pretrainlab run {path}")


@app.command()
def validate(design: Path) -> None:
    """Check a design file; prints each problem with its field path."""
    d = _load(design)
    console.print(f"{design}: ok ({len(d.exercises)} exercises, {d.train.total_steps} training steps)")


@app.command()
def schema(
    markdown: bool = typer.Option(False, "--markdown", help="Print the field reference (docs/design.md)."),
) -> None:
    """Print the JSON Schema of design files (for editor autocompletion)."""
    if markdown:
        print(design_markdown(), end="")
    else:
        print(json.dumps(json_schema(), indent=2))


def _stage_command(stage: str, doc: str):
    def command(design: Path, runs: Path = RUNS) -> None:
        pipeline = _pipeline(design, runs)
        result = pipeline.run_stage(stage)
        if pipeline.dist.is_main:
            console.print(str(result.dir))

    command.__doc__ = doc
    return command


app.command("generate")(_stage_command("generate", "Generate records and probes."))
app.command("curate")(_stage_command("curate", "Dedup and decontaminate records."))
app.command("tokenize")(_stage_command("tokenize", "Train the tokenizer and pack token shards."))
app.command("train")(_stage_command("train", "Pretrain the model, scoring probes as it goes."))


@app.command()
def report(
    run: Path = typer.Argument(..., help="A design file or a run directory runs/NAME."), runs: Path = RUNS
) -> None:
    """Write report.html for a design's finished stages."""
    from pretrainlab.report.build import build_report

    if run.is_dir():
        design_file = run / "design.yaml"
        if not design_file.exists():
            err.print(f"[red]error[/red] {run} holds no design.yaml; pass the design file instead")
            raise typer.Exit(2)
        pipeline = Pipeline(_load(design_file), run.parent, console=err)
    else:
        pipeline = _pipeline(run, runs)
    console.print(str(build_report(pipeline)))


@app.command()
def export(
    run: Path = typer.Argument(..., help="A run name, a run directory runs/NAME, or a design file."),
    fmt: str = typer.Option("hf", "--format", help="Output format: hf (a transformers model folder)."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default runs/NAME/export-hf)."),
    runs: Path = RUNS,
) -> None:
    """Export the trained model of a finished run for other tools (transformers, --format hf)."""
    from pretrainlab.errors import ExportError
    from pretrainlab.export import export_hf

    if fmt != "hf":
        _fail(f"--format {fmt!r}: the only format is 'hf'")
    stage = _train_stage(run, runs)
    try:
        console.print(str(export_hf(stage, out)), soft_wrap=True)
    except ExportError as e:
        _fail(str(e))


@app.command("eval")
def eval_(
    run: Path = typer.Argument(..., help="A run name, a run directory runs/NAME, or a design file."),
    harness: bool = typer.Option(
        False, "--harness", help="Score the probes with lm-evaluation-harness on the HF export first."
    ),
    batch_size: int = typer.Option(32, "--batch-size", help="lm-eval batch size (1: no padding at all)."),
    device: str | None = typer.Option(
        None, "--device", help="lm-eval device (default: cuda if any, else cpu)."
    ),
    runs: Path = RUNS,
) -> None:
    """In-loop probe scores of the final step beside lm-evaluation-harness scores of the same probes."""
    from pretrainlab.errors import ExportError, HarnessError
    from pretrainlab.evaluate.compare import comparison
    from pretrainlab.evaluate.harness import RESULTS, SUMMARY, evaluate_harness, harness_dir, read_summary
    from pretrainlab.evaluate.lmeval import INSTALL_HINT, lm_eval_available
    from pretrainlab.train.callbacks import read_metrics

    if harness and not lm_eval_available():
        _fail(f"lm-evaluation-harness is not installed: {INSTALL_HINT}")
    stage = _train_stage(run, runs)
    if harness:
        try:
            result = evaluate_harness(stage, batch_size=batch_size, device=device)
        except (ExportError, HarnessError) as e:
            _fail(str(e))
        if result.exported:
            err.print(
                f"exported the final checkpoint to {result.export_dir}", highlight=False, soft_wrap=True
            )
    rows = comparison(read_metrics(stage / METRICS))
    if not rows:
        _fail(f"{stage}: no harness results yet; run: pretrainlab eval {run} --harness")

    table = Table(title=f"In-loop vs lm-evaluation-harness (step {rows[0]['step']})", title_justify="left")
    for col in ("capability", "split", "metric", "in-loop", "harness", "n", "agree"):
        table.add_column(col, justify="left" if col in ("capability", "split", "metric") else "right")
    for r in rows:
        in_loop = "-" if r["in_loop"] is None else f"{r['in_loop']:.4f}"
        agree = "-" if r["in_loop"] is None else ("yes" if r["in_loop"] == r["harness"] else "NO")
        table.add_row(
            r["capability"], str(r["split"]), r["metric"], in_loop, f"{r['harness']:.4f}", str(r["n"]), agree
        )
    console.print(table)
    root = run_root(stage)
    summary = read_summary(root)
    if summary and summary.get("train_hash") == stage.name and "per_probe" in summary:
        p = summary["per_probe"]
        console.print(
            f"per probe: {p['compared'] - p['disagree']} of {p['compared']} agree"
            + (f" ({p['disagree']} differ: see {harness_dir(root) / SUMMARY})" if p["disagree"] else "")
            + f"; lm-eval {summary.get('lm_eval_s', 0):.1f} s, all {summary.get('wall_s', 0):.1f} s",
            highlight=False,
            soft_wrap=True,
        )
    if harness:
        console.print(f"results: {harness_dir(root) / RESULTS}", soft_wrap=True, highlight=False)
        if (root / DESIGN_COPY).is_file():
            from pretrainlab.report.build import build_report

            try:
                pipeline = Pipeline(load_design(root / DESIGN_COPY), root.parent, console=err)
            except DesignError:
                return
            if pipeline.stage_dir("train") == stage:
                console.print(f"report: {build_report(pipeline)}", soft_wrap=True, highlight=False)
            else:
                err.print(
                    f"report not rebuilt: {root / DESIGN_COPY} now maps to another training",
                    highlight=False,
                    soft_wrap=True,
                )


@app.command()
def run(design: Path, runs: Path = RUNS) -> None:
    """Run every stage (re-using finished ones), write the report, print scores and costs."""
    from pretrainlab.ledger import ledger_rows, split_totals
    from pretrainlab.report.build import build_report

    pipeline = _pipeline(design, runs)
    results = pipeline.run("train")
    if not pipeline.dist.is_main:  # under torchrun, rank 0 reports
        return
    path = build_report(pipeline)

    scores = Table(title="Final capability scores", title_justify="left")
    for col in ("capability", "split", "metric", "value", "n"):
        scores.add_column(col, justify="right" if col in ("value", "n") else "left")
    for row in results["train"].manifest.get("final_scores", []):
        if row["metric"] != "answer_logprob":
            scores.add_row(
                row["capability"], row["split"], row["metric"], f"{row['value']:.3f}", str(row["n"])
            )
    console.print(scores)

    rows = ledger_rows(pipeline.finished())
    ledger = Table(title="Ledger", title_justify="left")
    for col in ("stage", "wall s", "CPU s", "tokens", "FLOPs", "device h", "note"):
        ledger.add_column(col, justify="left" if col in ("stage", "note") else "right")
    for r in rows:
        ledger.add_row(
            r["stage"],
            f"{r['wall_s']:.1f}",
            f"{r['cpu_s']:.1f}",
            f"{r['tokens'] or 0:,}",
            f"{r['flops'] or 0:.3g}",
            "-" if r["device_hours"] is None else f"{r['device_hours']:.3g}",
            r["note"],
        )
    totals = split_totals(rows)
    ledger.add_section()
    for side in ("data", "training"):
        t = totals[side]
        ledger.add_row(
            f"[bold]{side}[/bold]", f"{t['wall_s']:.1f}", f"{t['cpu_s']:.1f}", "", f"{t['flops']:.3g}", "", ""
        )
    console.print(ledger)
    console.print(f"report: {path}")


@app.command()
def compare(
    designs: list[Path] = typer.Argument(..., help="Two or more design files."), runs: Path = RUNS
) -> None:
    """Final capability scores of several trained designs, side by side."""
    columns: dict[str, dict[tuple[str, str, str], float]] = {}
    for path in designs:
        manifest = _pipeline(path, runs).finished().get("train")
        if manifest is None:
            err.print(f"[red]error[/red] {path} has no finished training run under {runs}; run it first")
            raise typer.Exit(1)
        columns[path.stem] = {
            (r["capability"], r["split"], r["metric"]): r["value"] for r in manifest["final_scores"]
        }
    table = Table(title="Final capability scores", title_justify="left")
    for col in ("capability", "split", "metric", *columns):
        table.add_column(col, justify="right" if col in columns else "left")
    keys = sorted({k for scores in columns.values() for k in scores})
    for key in keys:
        cells = [f"{scores[key]:.3f}" if key in scores else "-" for scores in columns.values()]
        table.add_row(*key, *cells)
    console.print(table)


@app.command()
def plan(
    design: Path | None = typer.Argument(None, help="A design file to read the sizes from (optional)."),
    budget_flops: float | None = typer.Option(None, "--budget-flops", help="The whole budget in FLOPs."),
    device_hours: float | None = typer.Option(
        None, "--device-hours", help="The budget in device-hours (needs --peak-flops and --mfu)."
    ),
    peak_flops: float | None = typer.Option(
        None, "--peak-flops", help="Peak FLOP/s of one device, e.g. 989e12 (H100, dense bf16)."
    ),
    mfu: float | None = typer.Option(None, "--mfu", help="Utilisation of that peak, e.g. 0.4."),
    gen_params: float | None = typer.Option(
        None, "--gen-params", help="Generator parameters (default: the design's llm.endpoints[].params)."
    ),
    model_params: float | None = typer.Option(
        None, "--model-params", help="Model parameters (default: counted from the design's model)."
    ),
    unique_tokens: float | None = typer.Option(
        None, "--unique-tokens", help="Unique tokens the design can produce (default: its last generate)."
    ),
    generated_tokens: float | None = typer.Option(
        None, "--generated-tokens", help="Fix the tokens to generate (default: the 4-epoch rule)."
    ),
    generation_share: float | None = typer.Option(
        None, "--generation-share", help="Fix the budget's share spent on generation, in [0, 1)."
    ),
    prompt_ratio: float | None = typer.Option(
        None, "--prompt-ratio", help="Prompt tokens per generated token (default: the run's ledger, or 1)."
    ),
    runs: Path = RUNS,
) -> None:
    """Split a compute budget between generating data and training on it; warn outside known ground."""
    from pretrainlab.experiments import plan as planning

    loaded = _load(design) if design is not None else None
    try:
        budget, rate = planning.budget_flops(budget_flops, device_hours, peak_flops, mfu)
        inputs = planning.plan_inputs(
            loaded,
            runs,
            gen_params=gen_params,
            model_params=model_params,
            unique_tokens=unique_tokens,
            prompt_ratio=prompt_ratio,
        )
        result = planning.plan(
            budget,
            inputs.gen_params,
            inputs.model_params,
            inputs.unique_tokens,
            prompt_tokens_per_generated=inputs.prompt_ratio,
            generated_tokens=generated_tokens,
            generation_share=generation_share,
        )
    except ValueError as e:
        err.print(f"[red]error[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    for part in planning.render_plan(result, inputs, rate):
        console.print(part, highlight=False)


def main() -> None:
    from pretrainlab.train.distributed import shutdown

    # like `python -m`, let designs name verifiers and exercise kinds in modules of the working directory
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        app()
    except DesignError as e:
        for line in e.errors:
            err.print(f"[red]error[/red] {line}", highlight=False)
        sys.exit(2)
    except PretrainlabError as e:
        err.print(f"[red]error[/red] {e}", highlight=False)
        sys.exit(1)
    finally:
        shutdown()
