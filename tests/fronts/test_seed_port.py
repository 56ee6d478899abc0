"""examples/seed_ported.py: the seed note's seven gradient routes, with its convolution calls as
written (TF 1 keywords) against convgrad.tf, agree with each other and with SciPy."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "seed_ported.py"
SEED = sorted(Path(__file__).resolve().parents[3].glob("shared/seed/*.txt"))


def load():
    spec = importlib.util.spec_from_file_location("seed_ported", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_script_runs_and_all_seven_routes_agree():
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all 7 routes agree with each other and with scipy.signal.convolve2d" in done.stdout


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_routes_agree_for_other_examples(seed):
    m = load()
    d_x, d_w, ref = m.routes(seed)
    assert len(d_x) == 4 and len(d_w) == 3
    assert m.disagreements(d_x, d_w, ref) == []
    assert m.main(["--seed", str(seed)]) == 0


def test_a_wrong_route_is_reported():
    m = load()
    d_x, d_w, ref = m.routes(0)
    d_x["tf.nn.conv2d_transpose"] = d_x["tf.nn.conv2d_transpose"] + np.float32(1)
    problems = m.disagreements(d_x, d_w, ref)
    assert any("conv2d_transpose" in p for p in problems)


# The seed's six convolution calls, as the gist writes them (whitespace aside).
SEED_CALLS = [
    "tf.nn.conv2d(input=x, filter=w, strides=strides, padding='VALID')",
    "tf.nn.conv2d(input=tf_pad_to_full_conv2d(d_out, w_size), filter=tf_rot180(w), strides=strides, "
    "padding='VALID')",
    "tf.nn.conv2d_backprop_input(input_sizes=x_shape, filter=w, out_backprop=d_out, strides=strides, "
    "padding='VALID')",
    "tf.nn.conv2d_transpose(value=d_out, filter=w, output_shape=x_shape, strides=strides, padding='VALID')",
    "tf.nn.conv2d(input=x, filter=tf_NHWC_to_HWIO(d_out), strides=strides, padding='VALID')",
    "tf.nn.conv2d_backprop_filter(input=x, filter_sizes=w_shape, out_backprop=d_out, strides=strides, "
    "padding='VALID')",
]


def _calls(text):
    found = re.findall(r"tf\.nn\.\w+\((?:[^()]|\([^()]*\))*\)", text)
    return [re.sub(r"\s+", "", c) for c in found]


def test_convolution_calls_are_the_seeds_own():
    """Each tf.nn call of the seed appears in the port exactly, TF 1 keywords included."""
    ours = _calls(SCRIPT.read_text())
    for call in SEED_CALLS:
        assert re.sub(r"\s+", "", call) in ours, call
    if SEED:  # the stored seed note, where this checkout has it beside it
        # the stored page keeps the gist's table borders: " | |" at the end of each line
        text = "\n".join(re.sub(r"(\s*\|)+\s*$", "", line) for line in SEED[0].read_text().splitlines())
        assert sorted(_calls(text)) == sorted(re.sub(r"\s+", "", c) for c in SEED_CALLS)
