"""The `unidit` command line."""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

PARALLEL_COMMANDS = ("run", "serve")   # the commands that run under torchrun


def _add_bench(subparsers) -> None:
    from ..runtime.bench import BENCHMARKS

    bench = subparsers.add_parser("bench", help="measure speed: figures and side-by-side ratios",
                                  description="Run one benchmark and print its figures.")
    bench.add_argument("name", choices=sorted(BENCHMARKS), help="which benchmark to run")
    bench.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    bench.add_argument("--family", choices=["unidit", "wan"], default=None,
                       help="forward only: which backbone to compare with diffusers' Wan model (default: unidit)")
    bench.add_argument("--blocks-resident", default=None, metavar="N,...",
                       help="forward --family wan only: block swap with these numbers of resident blocks "
                            "(all, half or a number), e.g. all,half,2")
    bench.add_argument("--threshold", type=float, default=None,
                       help="cache only: the step cache's threshold (default: the suggested one, 0.05)")
    bench.set_defaults(handler=_run_bench)


def _run_bench(args) -> int:
    from ..runtime.bench import run_benchmark

    options = {}
    if args.family is not None or args.blocks_resident is not None:
        if args.name != "forward":
            print("error: --family and --blocks-resident apply to `unidit bench forward` only", file=sys.stderr)
            return 2
        options = {"family": args.family or "unidit", "blocks_resident": args.blocks_resident}
    if args.threshold is not None:
        if args.name != "cache":
            print("error: --threshold applies to `unidit bench cache` only", file=sys.stderr)
            return 2
        if not 0 < args.threshold < float("inf"):
            print(f"error: --threshold must be a finite number > 0 (0 turns the cache off: nothing to compare), got "
                  f"{args.threshold}", file=sys.stderr)
            return 2
        options["threshold"] = args.threshold
    figures = run_benchmark(args.name, progress=not args.json, **options)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        width = max(len(key) for key in figures)
        for key, value in figures.items():
            print(f"{key:<{width}}  {value}")
    return 0


def _add_compute_options(parser) -> None:
    parser.add_argument("--device", default="auto", metavar="DEVICE",
                        help="where models compute: auto (CUDA, else Apple's MPS, else the CPU), cpu, cuda, cuda:N "
                             "or mps (default: %(default)s)")
    parser.add_argument("--vram-budget", type=_positive_gb, default=None, metavar="GB",
                        help="device memory the diffusion model's weights may use; blocks beyond it stay in host "
                             "memory and are streamed in as they run (default: no limit)")
    parser.add_argument("--preview-method", choices=["none", "latent2rgb", "decode"], default="latent2rgb",
                        help="sampling previews: none, a cheap latent -> RGB projection, or a full decode "
                             "(default: %(default)s)")
    parser.add_argument("--memory-budget", type=_positive_gb, default=None, metavar="GB",
                        help="memory one generation may use: prompts whose sizes (pixels x frames x batch, tokens) "
                             "need more are refused before they run (default: $UNIDIT_MEMORY_BUDGET_GB, else 3/4 of "
                             "this machine's RAM)")


def _positive_gb(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of GB") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"the budget must be a positive number of GB, got {text}")
    return value


def _compute_options(args):
    """The compute options of ``run`` / ``serve``; exits with a message for a device this machine lacks."""
    from ..runtime.comfy_bridge import ComputeOptions
    from ..runtime.store import check_device

    if args.device != "auto":
        try:
            check_device(args.device)
        except ValueError as problem:
            raise SystemExit(f"error: {problem}") from None
    return ComputeOptions(args.device, args.vram_budget, args.preview_method, args.memory_budget)


def _add_demo(subparsers) -> None:
    demo = subparsers.add_parser("demo", help="one prompt -> an image, a video, a splat and a mesh",
                                 description="Generate an image (PNG), a video (MP4), a Gaussian splat (PLY) and a "
                                             "mesh (GLB) from one prompt with the shipped demo bundle.")
    demo.add_argument("--prompt", default="a red cube", help="what to generate (default: %(default)s)")
    demo.add_argument("--out", type=Path, default=Path("output"), help="output folder (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    demo.add_argument("--bundle", type=Path, default=None, help="model bundle (default: the shipped demo bundle)")
    demo.add_argument("--device", default="auto", metavar="DEVICE",
                      help="auto (CUDA, else Apple's MPS, else the CPU), cpu, cuda, cuda:N or mps (default: %(default)s)")
    demo.set_defaults(handler=_run_demo)


def _run_demo(args) -> int:
    from ..runtime.demo import run_demo
    from ..runtime.output_formats import OUTPUT_KINDS

    try:
        outputs = run_demo(args.prompt, args.out, args.bundle, args.seed, device=args.device)
    except ValueError as problem:  # a device this machine lacks
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if outputs["note"]:
        print(f"note: {outputs['note']}")
    for kind in OUTPUT_KINDS:
        print(f"{kind.name:<6} {outputs[kind.name]}")
    print(f"done in {outputs['seconds']} s")
    return 0


def _add_run(subparsers) -> None:
    run = subparsers.add_parser("run", help="execute a workflow file without a server",
                                description="Run a workflow (the editor's UI format or the API format) with no "
                                            "server, and list the files it wrote.")
    run.add_argument("workflow", type=Path, help="workflow .json file")
    run.add_argument("--out", type=Path, default=Path("output"), help="output folder (default: %(default)s)")
    run.add_argument("--input", type=Path, default=Path("input"),
                     help="folder of input images (default: %(default)s; the examples' inputs are copied in)")
    run.add_argument("--models", type=Path, action="append", default=[], metavar="DIR",
                     help="a models folder laid out as ComfyUI's: bundles in DIR or DIR/unidit, Wan files in "
                          "DIR/diffusion_models, DIR/text_encoders and DIR/vae, diffusers folders in DIR/diffusers "
                          "(repeat for more; the pack's models/ is always searched)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="NODE.INPUT=VALUE",
                     help="change an input before running, e.g. --set 7.seed=42 --set 'UniDiTTextEncode.text=a "
                          "blue ball' (NODE: node id, title, or a class that occurs once)")
    _add_compute_options(run)
    _add_parallel_option(run)
    run.set_defaults(handler=_run_run)


def _add_parallel_option(parser) -> None:
    from ..runtime.parallel import SPLITS, SPLIT_ENVIRONMENT

    parser.add_argument("--parallel", choices=SPLITS, default=None,
                        help="under torchrun: how the processes share each generation. cfg: the conditional and "
                             "unconditional branches of guidance on 2 processes; sequence: every frame's tokens "
                             "split across all of them (Ulysses); auto: CFG 2 x sequence N/2 on an even number of "
                             f"processes, else sequence (default: ${SPLIT_ENVIRONMENT}, else auto)")


def _join_parallel(args):
    """(the parallel context or None, an exit status or None): joins torchrun's process group, if any."""
    from ..runtime.parallel import ParallelError, init_parallel

    try:
        return init_parallel(args.parallel), None
    except ParallelError as problem:
        if os.environ.get("RANK", "0") == "0":  # every rank fails alike: one says why
            print(f"error: {problem}", file=sys.stderr)
        return None, 2


def _run_run(args) -> int:
    from ..runtime import parallel

    context, status = _join_parallel(args)
    if status is not None:
        return status
    try:
        if context is None or context.is_leader:
            return _run_workflow(args, args.out, Path("temp"), leader=True)
        with tempfile.TemporaryDirectory(prefix=f"unidit-rank{context.rank}-") as scratch:
            return _run_workflow(args, Path(scratch), Path(scratch), leader=False)
    finally:
        parallel.shutdown()


def _run_workflow(args, out: Path, temp: Path, leader: bool) -> int:
    """Run the workflow; the leader (rank 0, or the only process) shows progress and lists the files it wrote,
    the other ranks of a torchrun write to a scratch folder and report only their own errors."""
    from ..runtime import parallel
    from .output_files import output_files
    from .run import run_workflow
    from .terminal import finish
    from .workflow import WorkflowError

    try:
        result = run_workflow(args.workflow, out, args.overrides, args.input, args.models, progress=leader,
                              temp_dir=temp, compute=_compute_options(args))
    except WorkflowError as problem:
        if leader:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    if not leader:
        return finish(result.status, result.error, prefix=f"rank {parallel.context().rank}: ")
    for _, _, entry in output_files(result.outputs):
        folder = out if entry.get("type", "output") == "output" else temp
        print(folder / entry.get("subfolder", "") / entry["filename"])
    return finish(result.status, result.error)


def _add_serve(subparsers) -> None:
    serve = subparsers.add_parser("serve", help="the ComfyUI editor and ComfyUI's HTTP API, without ComfyUI",
                                  description="Serve the ComfyUI graph editor with UniDiT's nodes and example "
                                              "workflows, and the part of ComfyUI's HTTP/WebSocket API that the "
                                              "editor and scripts use. Needs the 'serve' extra.")
    serve.add_argument("--listen", default="127.0.0.1", metavar="ADDRESS",
                       help="address to listen on (default: %(default)s; there is no authentication, so only "
                            "listen on other interfaces in a trusted network)")
    serve.add_argument("--port", type=int, default=8188, help="port (default: %(default)s)")
    serve.add_argument("--output-directory", type=Path, metavar="DIR", default=Path("output"),
                       help="where outputs are written (default: %(default)s)")
    serve.add_argument("--input-directory", type=Path, metavar="DIR", default=Path("input"),
                       help="input images (default: %(default)s; the examples' inputs are copied in)")
    serve.add_argument("--temp-directory", type=Path, metavar="DIR", default=Path("temp"),
                       help="previews (default: %(default)s)")
    serve.add_argument("--user-directory", type=Path, metavar="DIR", default=Path("user"),
                       help="the editor's settings and saved workflows (default: %(default)s)")
    serve.add_argument("--models", type=Path, action="append", default=[], metavar="DIR",
                       help="a models folder laid out as ComfyUI's: bundles in DIR or DIR/unidit, Wan files in "
                            "DIR/diffusion_models, DIR/text_encoders and DIR/vae, diffusers folders in "
                            "DIR/diffusers; searched before the pack's models/ (repeat for more)")
    serve.add_argument("--max-upload-size", type=float, default=100.0, metavar="MB",
                       help="largest request body in MB (default: %(default)s)")
    _add_compute_options(serve)
    _add_parallel_option(serve)
    serve.set_defaults(handler=_run_serve)


def _run_serve(args) -> int:
    from ..runtime import parallel
    from .frontend import FrontendMissing
    from .server import ServerConfig, run_server

    config = ServerConfig(listen=args.listen, port=args.port, output_directory=args.output_directory,
                          input_directory=args.input_directory, temp_directory=args.temp_directory,
                          user_directory=args.user_directory, models_directories=args.models,
                          max_upload_size_mb=args.max_upload_size, compute=_compute_options(args))
    context, status = _join_parallel(args)
    if status is not None:
        return status
    try:
        if context is not None and not context.is_leader:
            from .lockstep import follow_leader

            follow_leader(config.input_directory, config.models_directories, config.compute)
            return 0
        run_server(config)
    except FrontendMissing as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    except OSError as problem:  # e.g. the port is taken
        print(f"error: cannot serve on {args.listen}:{args.port}: {problem.strerror or problem}", file=sys.stderr)
        return 2
    finally:
        parallel.shutdown()
    return 0


def _add_submit(subparsers) -> None:
    submit = subparsers.add_parser("submit", help="run a workflow on a ComfyUI-compatible server",
                                   description="Queue a workflow (UI or API format) on `unidit serve` or ComfyUI, "
                                               "show its progress, download its outputs and list them.")
    submit.add_argument("workflow", type=Path, help="workflow .json file")
    submit.add_argument("--server", default="http://127.0.0.1:8188", metavar="URL", help="server URL (default: %(default)s)")
    submit.add_argument("--out", type=Path, default=Path("output"), metavar="DIR",
                        help="folder for the downloaded outputs (default: %(default)s)")
    submit.add_argument("--set", dest="overrides", action="append", default=[], metavar="NODE.INPUT=VALUE",
                        help="change an input before queueing, as for `unidit run`")
    submit.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="give up after this many seconds")
    submit.set_defaults(handler=_run_submit)


def _run_submit(args) -> int:
    from .submit import SubmitError, submit
    from .terminal import finish
    from .workflow import WorkflowError

    try:
        result = submit(args.workflow, args.server, args.out, args.overrides, timeout=args.timeout)
    except (SubmitError, WorkflowError) as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    for path in result.files:
        print(path)
    return finish(result.status, result.error)


def _add_train(subparsers) -> None:
    from ..runtime.train.recipe import PRESETS

    train = subparsers.add_parser("train", help="train a model bundle on the toy world (resumable)",
                                  description="Train every stage of a preset and write one .safetensors bundle. "
                                              "Interrupted runs resume from the work folder.")
    train.add_argument("--preset", choices=sorted(PRESETS), default="toyworld",
                       help="toyworld: the shipped bundle (hours); tiny: a few minutes (default: %(default)s)")
    train.add_argument("--work", type=Path, default=None, help="checkpoint folder (default: runs/<preset>)")
    train.add_argument("--out", type=Path, default=None,
                       help="bundle to write (default: models/unidit-<preset>.safetensors for toyworld, "
                            "runs/<preset>/unidit-<preset>.safetensors otherwise)")
    train.add_argument("--seed", type=int, default=0,
                       help="seed of the data and the initial weights (default: %(default)s)")
    train.add_argument("--lora-rank", type=int, default=None,
                       help="instead of a bundle, train a LoRA of this rank on the backbone of --from and write "
                            "it as a .safetensors LoRA file (for the UniDiT LoRA node)")
    train.add_argument("--from", dest="base", type=Path, default=None,
                       help="the bundle a LoRA adapts (default: the shipped demo bundle)")
    train.add_argument("--subject", default=None, metavar="'COLOUR SHAPE'",
                       help="train the LoRA on clips of this one subject, e.g. 'red torus' (default: the preset's "
                            "data)")
    train.add_argument("--steps", type=int, default=None, help="LoRA training steps (default: 300)")
    train.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    train.set_defaults(handler=_run_train)


def _run_train(args) -> int:
    from ..runtime.bundle import SHIPPED_BUNDLE
    from ..runtime.train.recipe import PRESETS, train_bundle

    preset = PRESETS[args.preset]
    work = args.work or Path("runs") / args.preset
    if args.lora_rank is not None:
        return _train_lora(args, preset, work, args.base or SHIPPED_BUNDLE)
    if args.subject or args.steps or args.base:
        print("error: --subject, --steps and --from belong to LoRA training; add --lora-rank", file=sys.stderr)
        return 2
    out = args.out or (SHIPPED_BUNDLE if preset.name == "toyworld" else work / f"unidit-{preset.name}.safetensors")
    if out.exists() and not args.overwrite:
        print(f"error: {out} exists; pass --overwrite to replace it, or choose another --out", file=sys.stderr)
        return 2
    try:
        bundle = train_bundle(preset, work, args.seed)
    except ValueError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    bundle.save(out, overwrite=args.overwrite)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    print(json.dumps(bundle.info, indent=2))
    return 0


def _train_lora(args, preset, work: Path, base: Path) -> int:
    from ..runtime.bundle import ModelBundle
    from ..runtime.lora import save_lora
    from ..runtime.train.recipe import fine_tune_lora

    subject = None
    if args.subject:
        subject = tuple(args.subject.lower().split())
        if len(subject) != 2:
            print(f"error: --subject takes a colour and a shape, e.g. 'red torus'; got {args.subject!r}",
                  file=sys.stderr)
            return 2
    stem = f"{base.stem}-lora{args.lora_rank}" + (f"-{'-'.join(subject)}" if subject else "")
    out = args.out or work / f"{stem}.safetensors"
    if out.suffix != ".safetensors":
        print(f"error: a LoRA is written as a .safetensors file; got --out {out}", file=sys.stderr)
        return 2
    if out.exists() and not args.overwrite:
        print(f"error: {out} exists; pass --overwrite to replace it, or choose another --out", file=sys.stderr)
        return 2
    try:
        layers, report = fine_tune_lora(ModelBundle.load(base), preset, work, args.lora_rank, args.seed,
                                        subject=subject, steps=args.steps)
    except ValueError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    save_lora(out, layers, {"base": base.name, "rank": str(args.lora_rank), "subject": report["subject"]},
              overwrite=args.overwrite)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {len(layers)} layers); copy it to ComfyUI's "
          f"models/loras to use it with the UniDiT LoRA node")
    print(json.dumps(report, indent=2))
    return 0


def _add_eval(subparsers) -> None:
    evaluate = subparsers.add_parser("eval", help="score a bundle on a fixed prompt set",
                                     description="Generate from a fixed set of prompts and score colour, shape, "
                                                 "3D consistency and image conditioning analytically.")
    evaluate.add_argument("bundle", nargs="?", type=Path, default=None,
                          help="model bundle (default: the shipped demo bundle)")
    evaluate.add_argument("--json", action="store_true", help="print the scores as one JSON object")
    evaluate.add_argument("--seed", type=int, default=0,
                          help="seed of the noise and the conditioning scenes (default: %(default)s)")
    evaluate.add_argument("--steps", type=int, default=None, help="sampling steps (default: the bundle's)")
    evaluate.add_argument("--lora", type=Path, default=None, metavar="FILE",
                          help="score only what this LoRA (from unidit train --lora-rank --subject) does to its "
                               "subject's prompt: colour and shape without it, at strength 1 and at strength 0")
    evaluate.set_defaults(handler=_run_eval)


def _run_eval(args) -> int:
    from ..runtime.bundle import SHIPPED_BUNDLE
    from ..runtime.families import ModelFiles, load_model
    from ..runtime.train.evaluate import EvalConfig, evaluate, evaluate_lora

    model = load_model(ModelFiles(args.bundle or SHIPPED_BUNDLE))
    config = EvalConfig(seed=args.seed, steps=args.steps)
    try:
        scores = evaluate_lora(model, args.lora, config) if args.lora else evaluate(model, config,
                                                                                    progress=not args.json)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(scores, indent=2))
    else:
        width = max(len(key) for key in scores)
        for key, value in scores.items():
            print(f"{key:<{width}}  {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unidit", description="UniDiT: one diffusion transformer for images, "
                                     "videos and 3D assets.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_demo(subparsers)
    _add_run(subparsers)
    _add_serve(subparsers)
    _add_submit(subparsers)
    _add_train(subparsers)
    _add_eval(subparsers)
    _add_bench(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and args.command not in PARALLEL_COMMANDS:
        print(f"error: `unidit {args.command}` runs in one process; under torchrun only "
              f"{' and '.join(PARALLEL_COMMANDS)} split their work across processes", file=sys.stderr)
        return 2
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
