"""The seed note, ported to convgrad: "TensorFlow Convolution Gradients" (yxlao's gist behind
https://stackoverflow.com/a/44350789), which computes the gradients of a convolution

    d_x four ways: tf.gradients; a "full" conv of the padded d_out with the 180-degree rotated
                   filter; tf.nn.conv2d_backprop_input; tf.nn.conv2d_transpose
    d_w three ways: tf.gradients; a conv of x with d_out in transposed layouts;
                    tf.nn.conv2d_backprop_filter

and checks them against scipy.signal.convolve2d.

Every convolution call below is the seed's, character for character, with TensorFlow 1's
keywords (``filter=``, ``value=``, ``input_sizes=``, ``filter_sizes=``, ``out_backprop=``); only
``import tensorflow as tf`` became ``from convgrad import tf``. What was TensorFlow's graph
machinery is plain NumPy: ``tf.constant`` is an array, ``tf.reverse``/``tf.pad``/``tf.transpose``
are their NumPy namesakes, ``tf.gradients`` is the op's ``.vjp``, and there is no session.

Run: ``python examples/seed_ported.py [--seed N]``; exit status 0 when the seven routes agree
with each other and with SciPy, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import scipy.signal

from convgrad import tf


def tf_rot180(w):
    """
    Roate by 180 degrees
    """
    return np.flip(w, axis=(0, 1))  # was tf.reverse(w, axis=[0, 1])


def tf_pad_to_full_conv2d(x, w_size):
    """
    Pad x, such that using a 'VALID' convolution in tensorflow is the same
    as using a 'FULL' convolution. See
    http://deeplearning.net/software/theano/library/tensor/nnet/conv.html#theano.tensor.nnet.conv2d
    for description of 'FULL' convolution.
    """
    return np.pad(x, [[0, 0],
                      [w_size - 1, w_size - 1],
                      [w_size - 1, w_size - 1],
                      [0, 0]])


def tf_NHWC_to_HWIO(out):
    """
    Converts [batch, in_height, in_width, in_channels]
    to [filter_height, filter_width, in_channels, out_channels]
    """
    return np.transpose(out, [1, 2, 0, 3])


def rot180(x):
    return np.flipud(np.fliplr(x))


def conv2d(x, w, mode='full', boundary='fill', fillvalue=0):
    """
    2d convolution without rot180, scipy's conv2d rotates
    the filter by 180 degress.
    """
    return scipy.signal.convolve2d(x, rot180(w),
                                   mode=mode,
                                   boundary=boundary,
                                   fillvalue=fillvalue)


def routes(seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The seed's computation: (d_x routes, d_w routes, SciPy's d_x and d_w)."""
    rng = np.random.default_rng(seed)  # the seed drew with np.random.randint, unseeded

    # sizes, fixed strides, in_channel, out_channel be 1 for now
    x_size = 4
    w_size = 3  # use an odd number here
    x_shape = (1, x_size, x_size, 1)
    w_shape = (w_size, w_size, 1, 1)
    out_shape = (1, x_size - w_size + 1, x_size - w_size + 1, 1)
    strides = (1, 1, 1, 1)

    # numpy value
    x_np = rng.integers(10, size=x_shape)
    w_np = rng.integers(10, size=w_shape)
    out_scale_np = rng.integers(10, size=out_shape)

    # forward (tf.constant(..., dtype=tf.float32) is the array itself)
    x = x_np.astype(np.float32)
    w = w_np.astype(np.float32)
    out = tf.nn.conv2d(input=x, filter=w, strides=strides, padding='VALID')
    out_scale = out_scale_np.astype(np.float32)
    f = np.sum(np.multiply(out, out_scale))
    assert np.isfinite(f)

    # backward: f = sum(out * out_scale), so d_out = out_scale; tf.gradients(f, [x, w]) is the
    # pullback of the same call's .vjp applied to d_out.
    d_out = out_scale
    _, pullback = tf.nn.conv2d.vjp(input=x, filter=w, strides=strides, padding='VALID')
    d_x_vjp, d_w_vjp = pullback(d_out)

    # 4 different ways to compute d_x
    d_x = d_x_vjp
    d_x_manual = tf.nn.conv2d(input=tf_pad_to_full_conv2d(d_out, w_size),
                              filter=tf_rot180(w),
                              strides=strides,
                              padding='VALID')
    d_x_backprop_input = tf.nn.conv2d_backprop_input(input_sizes=x_shape,
                                                     filter=w,
                                                     out_backprop=d_out,
                                                     strides=strides,
                                                     padding='VALID')
    d_x_transpose = tf.nn.conv2d_transpose(value=d_out,
                                           filter=w,
                                           output_shape=x_shape,
                                           strides=strides,
                                           padding='VALID')

    # 3 different ways to compute d_w
    d_w = d_w_vjp
    d_w_manual = tf_NHWC_to_HWIO(tf.nn.conv2d(input=x,
                                              filter=tf_NHWC_to_HWIO(d_out),
                                              strides=strides,
                                              padding='VALID'))
    d_w_backprop_filter = tf.nn.conv2d_backprop_filter(input=x,
                                                       filter_sizes=w_shape,
                                                       out_backprop=d_out,
                                                       strides=strides,
                                                       padding='VALID')

    # Get the same results using numpy / scipy
    # convert from 4d to 2d
    x_np = x_np.squeeze()
    w_np = w_np.squeeze()
    d_out_np = out_scale_np.squeeze()

    # compute gradient manually
    out_np = conv2d(x_np, w_np, mode='valid')
    np.testing.assert_allclose(out.squeeze(), out_np)
    d_x_np = conv2d(d_out_np, rot180(w_np), mode='full')
    d_w_np = conv2d(x_np, d_out_np, mode='valid')

    d_x_routes = {
        "tf.gradients (.vjp)": d_x,
        "full conv of padded d_out with rot180(w)": d_x_manual,
        "tf.nn.conv2d_backprop_input": d_x_backprop_input,
        "tf.nn.conv2d_transpose": d_x_transpose,
    }
    d_w_routes = {
        "tf.gradients (.vjp)": d_w,
        "conv of x with d_out, NHWC <-> HWIO": d_w_manual,
        "tf.nn.conv2d_backprop_filter": d_w_backprop_filter,
    }
    return d_x_routes, d_w_routes, {"d_x": d_x_np, "d_w": d_w_np}


def disagreements(d_x_routes: dict, d_w_routes: dict, scipy_ref: dict) -> list[str]:
    """Each route against the first of its kind (the seed's sess.run asserts) and against SciPy."""
    problems = []
    for name, group in (("d_x", d_x_routes), ("d_w", d_w_routes)):
        first_name, first = next(iter(group.items()))
        for route, value in group.items():
            for ref_name, ref in ((first_name, first), ("scipy", scipy_ref[name])):
                try:
                    np.testing.assert_allclose(value.squeeze(), ref.squeeze())
                except AssertionError:
                    problems.append(f"{name}: {route!r} disagrees with {ref_name!r}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the random example (default 0)")
    args = parser.parse_args(argv)
    d_x_routes, d_w_routes, scipy_ref = routes(args.seed)
    for name, group in (("d_x", d_x_routes), ("d_w", d_w_routes)):
        for route, value in group.items():
            print(f"{name} via {route:42s} {value.squeeze().tolist()}")
    problems = disagreements(d_x_routes, d_w_routes, scipy_ref)
    for p in problems:
        print("DISAGREE:", p)
    if problems:
        return 1
    count = len(d_x_routes) + len(d_w_routes)
    print(f"all {count} routes agree with each other and with scipy.signal.convolve2d")
    return 0


if __name__ == "__main__":
    sys.exit(main())
