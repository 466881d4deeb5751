"""The GPU path in one go: training throughput of the seed MLP and the CIFAR-shaped CNN on CUDA in fp32, AMP
and channels-last, eager, with torch.compile and with CUDA graphs; peak memory; POST → completed through
the API with device=cuda; then the tests marked `cuda`. Exits within --timeout (default 280 s).

Throughput is measured on synthetic in-memory data of the right shapes (uint8-like pixels scaled to [0, 1],
batches already on the GPU): it is the training step's speed, not a data pipeline's, and every variant
gets the same batches, so the comparison is fair. Models are the engine's own (app.engine.build) from the
tutorial's specs: the MNIST MLP (Flatten → Dense 128 relu → Dense 10) with Adam at batch 32, as the
tutorial, and the preset cifar10-cnn at batch 128. Each variant runs on a fresh model and prints its
samples/s and the allocator's peak (torch.cuda.max_memory_allocated, above the synthetic batches it holds:
the model, its gradients, Adam's state, activations and workspaces); a variant that fails prints why and
the script goes on. AMP is bf16 autocast where the GPU supports it, else fp16 with a GradScaler.

Variants: fp32; AMP; AMP + channels-last (CNN); torch.compile (default mode) in fp32 and AMP;
torch.compile(mode="reduce-overhead") (CUDA graphs through Inductor) in AMP; and the whole training step
(forward, backward, Adam with capturable=True) captured as one CUDA graph and replayed, in fp32 and bf16
(fp16 needs the GradScaler's host-side inf check: not capturable, skipped with the reason).

Without a CUDA device it prints "no CUDA device: nothing measured" and exits 0. `--cpu-smoke` runs the
same code paths on the CPU with tiny sizes (torch.compile with the "eager" backend, the graph variant's
step without capture, the API on the built-in digits set) so that a test checks the script in seconds.

    python bench/gpu.py [--timeout 280] [--seconds 2] [--skip-api] [--skip-tests]
    python bench/gpu.py --cpu-smoke
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

MLP = harness.MNIST_MLP  # the tutorial's MNIST MLP
MODELS = {"mlp": (MLP, (1, 28, 28), 32), "cnn": (None, (3, 32, 32), 128)}  # cnn: presets' cifar10-cnn


@dataclass
class Plan:
    device: str
    smoke: bool
    seconds: float  # measuring time per variant
    warmup_steps: int
    deadline: float  # time.monotonic() after which variants are skipped
    amp: str  # "bf16" | "fp16"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--timeout", type=float, default=280.0, help="hard limit for the whole script (exit 124)")
    p.add_argument("--seconds", type=float, default=2.0, help="measuring time per variant (default 2)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--amp", choices=("auto", "bf16", "fp16"), default="auto",
                   help="AMP dtype: auto is bf16 where the GPU supports it, else fp16 with a GradScaler")
    p.add_argument("--skip-api", action="store_true", help="leave out POST → completed through the API")
    p.add_argument("--skip-tests", action="store_true", help="leave out the tests marked cuda")
    p.add_argument("--api-epochs", type=int, default=2)
    p.add_argument("--cpu-smoke", action="store_true", help="the same code paths on the CPU, tiny sizes")
    args = p.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.monotonic()
    print("== bench/gpu.py: the GPU path (synthetic in-memory data for throughput)", flush=True)
    print(f"   torch {torch.__version__}; CUDA build {torch.version.cuda}; cuDNN "
          f"{torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}; "
          f"torch CPU threads {torch.get_num_threads()}; {harness.load()}", flush=True)
    cuda = torch.cuda.is_available()
    if not cuda and not args.cpu_smoke:
        print(f"no CUDA device: nothing measured (torch {torch.__version__}, CUDA build {torch.version.cuda}, "
              f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})", flush=True)
        return 0
    if args.cpu_smoke:
        device, amp = "cpu", ("bf16" if args.amp == "auto" else args.amp)
        print("   --cpu-smoke: the code paths on the CPU with tiny sizes; the figures mean nothing", flush=True)
    else:
        device = "cuda"
        bf16 = torch.cuda.is_bf16_supported()
        amp = args.amp if args.amp != "auto" else ("bf16" if bf16 else "fp16")
        major, minor = torch.cuda.get_device_capability(0)
        free, total = torch.cuda.mem_get_info(0)
        print(f"   GPU: {torch.cuda.get_device_name(0)} (compute capability {major}.{minor}, "
              f"{total / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free); bf16 supported: {bf16}; "
              f"TF32 matmul: {torch.backends.cuda.matmul.allow_tf32}", flush=True)
    print(f"   AMP here: {'bf16 autocast' if amp == 'bf16' else 'fp16 autocast + GradScaler'}", flush=True)

    with harness.Watchdog(args.timeout) as watchdog:
        # Leave room at the end for the API part and the tests: variants stop being started past this.
        reserve = 0 if args.cpu_smoke else (60 if not args.skip_api else 0) + (40 if not args.skip_tests else 0)
        plan = Plan(device=device, smoke=args.cpu_smoke, seconds=0.05 if args.cpu_smoke else args.seconds,
                    warmup_steps=2 if args.cpu_smoke else 10,
                    deadline=started + args.timeout - 15 - reserve, amp=amp)
        rows: list[str] = []
        watchdog.report = lambda: print("\n".join(rows), flush=True)
        # Eager and CUDA-graph variants of both models first, then the compiled ones (each compile can take
        # tens of seconds: if the budget runs out, what is cheap to measure is measured already).
        for tier in ("eager", "compiled"):
            for name in MODELS:
                for row in throughput(name, plan, tier):
                    rows.append(row)
                    print(row, flush=True)
        if not args.skip_api:
            api_through(device, args, watchdog, started)
        if not args.skip_tests and not args.cpu_smoke:
            cuda_tests(started + args.timeout - 10)
    print(f"   total {time.monotonic() - started:.1f} s; {harness.load()} (after)", flush=True)
    return 0


# --- throughput ---------------------------------------------------------------------------
def throughput(name: str, plan: Plan, tier: str) -> list[str]:
    """One line per variant of model `name` in `tier` ("eager": eager and whole-step CUDA graph variants;
    "compiled": torch.compile's): samples/s and peak memory, or why it did not run."""
    import torch

    spec, shape, batch = MODELS[name]
    if spec is None:
        from app.architectures import presets

        spec = presets.get_preset("cifar10-cnn").spec
    if plan.smoke:
        batch = 4
    rows = [f"-- {name}: {'MLP 784-128-10' if name == 'mlp' else 'CNN (preset cifar10-cnn)'}, "
            f"input {'x'.join(map(str, shape))}, batch {batch}, Adam 1e-3: {tier} variants"]
    device = torch.device(plan.device)
    gen = torch.Generator(device="cpu").manual_seed(0)
    pool = 8 if plan.smoke else 64
    xs = (torch.randint(0, 256, (pool, batch, *shape), generator=gen).float() / 255).to(device)
    ys = torch.randint(0, 10, (pool, batch), generator=gen).to(device)
    amp_dtype = torch.bfloat16 if plan.amp == "bf16" else torch.float16
    conv = name == "cnn"
    variants: list[tuple[str, dict[str, Any]]] = [
        ("fp32 eager", {}),
        (f"AMP {plan.amp} eager", {"amp": amp_dtype}),
        (f"AMP {plan.amp} + channels-last eager", {"amp": amp_dtype, "channels_last": True}),
        ("fp32 torch.compile", {"compile": "default"}),
        (f"AMP {plan.amp} torch.compile", {"amp": amp_dtype, "compile": "default", "channels_last": conv}),
        (f"AMP {plan.amp} torch.compile reduce-overhead (CUDA graphs)",
         {"amp": amp_dtype, "compile": "reduce-overhead", "channels_last": conv}),
        ("fp32 whole step as one CUDA graph", {"graph": True}),
        (f"AMP {plan.amp} whole step as one CUDA graph", {"amp": amp_dtype, "graph": True, "channels_last": conv}),
    ]
    for label, options in variants:
        if ("compile" in options) != (tier == "compiled"):
            continue
        if options.get("channels_last") and not conv and "channels-last" in label:
            rows.append(f"   {label:<58} skipped: channels-last is a layout for 4-D (image) tensors; "
                        "the MLP flattens at once")
            continue
        if time.monotonic() > plan.deadline:
            rows.append(f"   {label:<58} skipped: the script's time budget is spent")
            continue
        try:
            rate, peak, note = measure(spec, shape, xs, ys, plan, device, **options)
        except Exception as exc:  # guard: say why and go on with the next variant
            last = traceback.extract_tb(exc.__traceback__)[-1]
            message = " ".join(str(exc).split())[:300]
            rows.append(f"   {label:<58} FAILED: {type(exc).__name__}: {message} "
                        f"(at {Path(last.filename).name}:{last.lineno})")
            _free(device)
            continue
        peak_text = f"{peak / 2**20:8.1f} MiB peak above the data" if peak is not None else "peak n/a (CPU)"
        rows.append(f"   {label:<58} {rate:>12,.0f} samples/s  {peak_text}{'  ' + note if note else ''}")
        _free(device)
    return rows


def _free(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def measure(spec, shape, xs, ys, plan: Plan, device, *, amp=None, channels_last=False, compile=None,
            graph=False) -> tuple[float, int | None, str]:
    """(samples/s, peak bytes or None, note) for one variant on a fresh model."""
    import torch
    import torch.nn.functional as F

    from app.engine.build import build_model

    torch.manual_seed(0)
    batches = list(xs.unbind(0))  # one (batch, C, H, W) tensor per step, already on the device
    if channels_last:
        batches = [x.contiguous(memory_format=torch.channels_last) for x in batches]
    baseline = 0
    if device.type == "cuda":  # the peak is counted above the batches already held
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = int(torch.cuda.memory_allocated())
    model = build_model(spec, list(shape)).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    scaler = None
    if amp is torch.float16:
        if graph:
            raise RuntimeError("fp16 needs the GradScaler, whose inf check syncs with the host: not capturable")
        scaler = torch.amp.GradScaler(device.type)
    autocast = (functools.partial(torch.autocast, device.type, dtype=amp) if amp is not None
                else contextlib.nullcontext)
    note = ""
    if compile is not None:
        if plan.smoke:  # dynamo's tracing without Inductor's C++/Triton builds: seconds, not minutes
            model = torch.compile(model, backend="eager")
            note = "(smoke: backend eager)"
        else:
            model = torch.compile(model, mode=compile)
    batch, pool = xs.shape[1], len(batches)

    if graph:
        step, note = _graphed_step(model, batches, ys, device, amp)
    else:
        optimizer = harness.best_adam(model.parameters(), 1e-3)[0]

        mark = torch.compiler.cudagraph_mark_step_begin if compile == "reduce-overhead" else (lambda: None)

        def step(i: int) -> None:
            mark()  # a new iteration: CUDA graph trees may reuse the last one's output memory
            with autocast():
                loss = F.cross_entropy(model(batches[i % pool]), ys[i % pool])
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()

    model.train()
    for i in range(plan.warmup_steps):  # compiles, autotunes, records graphs, fills caches
        step(i)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    steps, start = 0, time.perf_counter()
    while True:
        for _ in range(2 if plan.smoke else 20):
            step(steps)
            steps += 1
        sync()
        elapsed = time.perf_counter() - start
        if elapsed >= plan.seconds or time.monotonic() > plan.deadline + 10:
            break
    peak = int(torch.cuda.max_memory_allocated()) - baseline if device.type == "cuda" else None
    return steps * batch / elapsed, peak, note


def _graphed_step(model, batches, ys, device, amp) -> tuple[Callable[[int], None], str]:
    """The whole training step captured once as a CUDA graph (PyTorch's "whole network capture"): static
    input and target tensors, Adam(capturable=True), warm-up on a side stream, capture on the same
    stream, then each step copies the next batch into the static tensors and replays. On the CPU
    (--cpu-smoke) the same step runs without capture."""
    import torch
    import torch.nn.functional as F

    params = list(model.parameters())
    try:
        optimizer = torch.optim.Adam(params, lr=1e-3, capturable=device.type == "cuda", fused=True)
    except (RuntimeError, TypeError, ValueError):
        optimizer = torch.optim.Adam(params, lr=1e-3, capturable=device.type == "cuda", foreach=True)
    static_x, static_y = batches[0].clone(), ys[0].clone()  # clone keeps channels-last
    # autocast caches casts across a capture unless told not to (the CUDA graphs notes' rule)
    autocast = (functools.partial(torch.autocast, device.type, dtype=amp, cache_enabled=False)
                if amp is not None else contextlib.nullcontext)

    def body() -> None:
        with autocast():
            loss = F.cross_entropy(model(static_x), static_y)
        loss.backward()
        optimizer.step()

    pool = len(batches)
    if device.type != "cuda":
        def eager(i: int) -> None:
            static_x.copy_(batches[i % pool])
            static_y.copy_(ys[i % pool])
            optimizer.zero_grad(set_to_none=False)
            body()

        return eager, "(smoke: the step without capture)"
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            optimizer.zero_grad(set_to_none=True)
            body()
    torch.cuda.current_stream().wait_stream(stream)
    cuda_graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)  # grads are allocated inside the graph's pool
    with torch.cuda.graph(cuda_graph, stream=stream):
        body()

    def replay(i: int) -> None:
        static_x.copy_(batches[i % pool])
        static_y.copy_(ys[i % pool])
        cuda_graph.replay()

    return replay, ""


# --- through the API ----------------------------------------------------------------------
def api_through(device: str, args, watchdog, started: float) -> None:
    """POST /api/runs → completed with config.device = `device` on a real `trainboard serve`."""
    import httpx

    left = started + args.timeout - time.monotonic() - (10 if args.skip_tests or args.cpu_smoke else 50)
    if left < 30 and not args.cpu_smoke:
        print(f"-- API: skipped: {left:.0f} s left in the time budget", flush=True)
        return
    smoke = args.cpu_smoke
    try:
        with harness.Server(env={"TRAINBOARD_SLOTS": "1"}, watchdog=watchdog) as server:
            dataset, epochs, note = "digits", 1, "built-in digits (8x8)"
            if not smoke:
                try:
                    harness.import_mnist(server.data_dir)
                    dataset, epochs, note = "mnist", args.api_epochs, "real MNIST"
                except SystemExit as exc:  # no MNIST files and no network: the digits set still runs
                    note = f"built-in digits (8x8): MNIST is not here ({exc})"
            server.start()
            body = {"dataset": dataset, "config": {"epochs": epochs, "batch_size": 32, "device": device,
                                                   "optimizer": {"name": "adam", "lr": 0.001}, "seed": 0,
                                                   "val_split": 0.0}}
            body |= {"preset": "mnist-mlp"} if dataset == "mnist" else {"spec": {"layers": MLP["layers"]}}
            print(f"-- API: POST /api/runs → completed, seed MLP on {note}, {epochs} epoch(s), batch 32, "
                  f"device {device}", flush=True)
            with httpx.Client(base_url=server.url, timeout=30) as client:
                for attempt in (1, 2):  # the second run has a warm standby trainer
                    server.wait_standby(attempt)
                    posted = time.perf_counter()
                    response = client.post("/api/runs", json=body)
                    if response.status_code != 201:
                        print(f"   run {attempt}: POST answered {response.status_code}: {response.text[:300]}",
                              flush=True)
                        return
                    run_id = response.json()["id"]
                    limit = time.monotonic() + max(left - 5, 20)
                    while True:
                        state = client.get(f"/api/runs/{run_id}").json()
                        if state["status"] in ("completed", "failed", "cancelled") or time.monotonic() > limit:
                            break
                        time.sleep(0.05)
                    elapsed = time.perf_counter() - posted
                    rows = client.get(f"/api/runs/{run_id}/metrics").json()
                    epochs_s = sum(r["payload"]["epoch_time"] for r in rows if r["kind"] == "epoch")
                    memory = [r["payload"] for r in rows if r["kind"] == "memory"]
                    peak = memory[-1].get("peak_bytes") if memory else None
                    print(f"   run {attempt}: {state['status']} in {elapsed:.2f} s (POST → {state['status']}); "
                          f"epochs {epochs_s:.2f} s; test accuracy {state.get('test_accuracy')}; peak "
                          f"{'n/a' if peak is None else f'{peak / 2**20:.1f} MiB'} "
                          f"({memory[-1].get('kind') if memory else '-'})"
                          + (f"; failure: {state.get('failure_reason')}" if state["status"] != "completed" else ""),
                          flush=True)
                    if state["status"] != "completed":
                        return
    except Exception as exc:  # the throughput figures above stand on their own
        print(f"-- API: FAILED: {type(exc).__name__}: {' '.join(str(exc).split())[:400]}", flush=True)


# --- the tests marked cuda ----------------------------------------------------------------
def cuda_tests(deadline: float) -> None:
    """`pytest -m cuda` over the test files that mark tests `cuda` (they need a GPU; elsewhere they are
    skipped), within what is left of the time budget."""
    left = int(deadline - time.monotonic())
    if left < 20:
        print(f"-- tests marked cuda: skipped: {left} s left in the time budget", flush=True)
        return
    files = sorted(str(path.relative_to(harness.ROOT)) for path in (harness.ROOT / "tests").rglob("test_*.py")
                   if "mark.cuda" in path.read_text(errors="replace"))
    if not files:
        print("-- tests marked cuda: none found under tests/", flush=True)
        return
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", *files,
               f"--timeout={left}"]
    print(f"-- tests marked cuda: {' '.join(command[1:])}", flush=True)
    env = {**os.environ, "PYTHONPATH": str(harness.ROOT)}
    try:
        done = subprocess.run(command, cwd=harness.ROOT, env=env, capture_output=True, text=True, timeout=left)
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        print("\n".join(f"   {line}" for line in tail), flush=True)
        print(f"   pytest exit status {done.returncode}", flush=True)
    except subprocess.TimeoutExpired:
        print(f"   pytest ran past the {left} s left: stopped", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
