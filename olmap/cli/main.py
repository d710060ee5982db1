"""Entry point of the ``olmap`` command."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.markup import escape

from olmap import __version__
from olmap.cli import calibrate as calibrate_cmd
from olmap.cli import crystals as crystals_cmd
from olmap.cli import ct as ct_cmd
from olmap.cli import dataset as dataset_cmd
from olmap.cli import demo as demo_cmd
from olmap.cli import eds as eds_cmd
from olmap.cli import info as info_cmd
from olmap.cli import masks as masks_cmd
from olmap.cli import mosaic as mosaic_cmd
from olmap.cli import predict as predict_cmd
from olmap.cli import run as run_cmd
from olmap.cli import synth as synth_cmd
from olmap.cli import tiles as tiles_cmd
from olmap.cli import train as train_cmd
from olmap.cli._console import STATE, configure_logging, stderr
from olmap.errors import OlmapError
from olmap.io.resume import RunInterrupted

app = typer.Typer(
    name="olmap",
    help=(
        "Olivine maps and crystal catalogues from SEM (BSE + EDS) mosaics of thin sections.\n\n"
        "Example: olmap synth section demo_section --seed 7 --size 4096x4096"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# Listed in `olmap --help` in this order: start here, then the pipeline's stages.
app.command("demo")(demo_cmd.demo)
app.command("run")(run_cmd.run)
app.add_typer(synth_cmd.app, name="synth")
app.command("info")(info_cmd.info)
app.command("mosaic")(mosaic_cmd.mosaic)
app.command("eds")(eds_cmd.eds)
app.command("masks")(masks_cmd.masks)
app.command("dataset")(dataset_cmd.dataset)
app.command("train")(train_cmd.train)
app.command("evaluate")(train_cmd.evaluate)
app.command("predict")(predict_cmd.predict)
app.command("calibrate")(calibrate_cmd.calibrate)
app.command("mgmap")(calibrate_cmd.mgmap)
app.command("crystals")(crystals_cmd.crystals)
app.command("tiles")(tiles_cmd.tiles)
app.command("serve")(tiles_cmd.serve)
app.add_typer(ct_cmd.app, name="ct")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"olmap {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output (-vv for debug).")
    ] = 0,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only errors; no progress bars.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    STATE.verbose, STATE.quiet, STATE.debug = verbose, quiet, debug
    configure_logging(STATE)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        errs = exc.errors()
        first = errs[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or exc.title
        more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
        return f"invalid {where}: {first.get('msg')}{more}"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _fail(label: str, message: str, code: int) -> None:
    stderr.print(f"[bold red]olmap: {label}:[/] {escape(message)}", markup=True, soft_wrap=True)
    sys.exit(code)


def main() -> None:
    """Run the CLI; user errors become one line on stderr (traceback only with --debug).

    Exit codes: 0 success, 1 bad input or failed work, 2 bad usage, 3 internal error,
    130 interrupted (a resumable run says how to resume).
    """
    try:
        # Not standalone: usage errors come here and are reported in one line like the rest.
        code = app(standalone_mode=False)
    except typer.TyperException as exc:  # Click's usage errors (Typer vendors Click)
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `olmap` or `olmap synth`
            typer.echo(exc.format_message())
            sys.exit(0)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        _fail("error", exc.format_message() + hint, getattr(exc, "exit_code", 2))
    except (KeyboardInterrupt, typer.Abort):
        _fail("stopped", "interrupted; nothing was written under the output names", 130)
    except RunInterrupted as exc:
        _fail("stopped", _one_line(exc), 130)
    except (OlmapError, ValidationError, OSError, ValueError) as exc:
        if STATE.debug:
            raise
        _fail("error", _one_line(exc), 1)
    except Exception as exc:  # an olmap bug: still one line, with a pointer to --debug
        if STATE.debug:
            raise
        _fail(
            "internal error",
            f"{type(exc).__name__}: {_one_line(exc)} (rerun with --debug for the traceback)",
            3,
        )
    if code == 130:  # Typer's answer to Ctrl-C outside a resumable run: say so
        _fail("stopped", "interrupted; nothing was written under the output names", 130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
