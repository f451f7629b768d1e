"""oneDNN's fused LSTM layer, enclosed: ``aten.mkldnn_rnn_layer`` (what ``nn.LSTM`` runs on CPU).

One layer, one direction (``bidirectional`` layers are two calls), PyTorch's gate order i, f, g, o::

    gates_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh
    c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g)        h_t = sigmoid(o) tanh(c_t)

over t = 0..T-1 (T-1..0 with ``reverse``). Values and derivatives are enclosures (FLINT's Arb for
sigmoid and tanh, :func:`mtcheck._ball.apply`); the derivative is forward mode through the
recurrence (no reverse rule: the model differentiates the layer in forward mode, within its budget).
The workspace output is oneDNN's scratch for its own backward: returned as recorded, never read by
the program. Packed sequences (``batch_sizes``) and modes other than LSTM are refused. ``nn.LSTM``
transposes a batch-first input before the layer, which always sees (T, B, features).
"""

from __future__ import annotations

import numpy as np

from . import NotModelled, Rule, register
from .._ball import apply, ball, exactify, to_ball
from .smooth import _sigmoid


def _sig(x):
    return apply(_sigmoid, x)


def _tanh(x):
    return apply(lambda a: a.tanh(), x)


def _unpack(args):
    (x, w_ih, w_hh, b_ih, b_hh, hx, cx, reverse, batch_sizes, mode, hidden, num_layers, has_biases,
     bidirectional, batch_first, train) = args[:16]
    if mode != 2:
        raise NotModelled(f"RNN mode {mode} (only LSTM, mode 2)")
    if batch_sizes:
        raise NotModelled("packed sequences (batch_sizes)")
    # (batch_first is passed on, but nn.LSTM hands the layer (T, B, features) either way)
    return x, w_ih, w_hh, b_ih if has_biases else None, b_hh if has_biases else None, hx, cx, bool(reverse)


def _mm_t(a, w):
    """a @ w^T with a (..., k) and w (n, k), as enclosures."""
    return np.matmul(to_ball(a), np.swapaxes(to_ball(w), 0, 1))


@register("aten.mkldnn_rnn_layer.default")
class MkldnnLstmLayer(Rule):
    balls = True

    def _run(self, ctx, args, tangents=None):
        """Forward values, and tangents (B, ...) of every output when ``tangents`` maps argument
        positions 0..6 to their tangents."""
        x, w_ih, w_hh, b_ih, b_hh, hx, cx, reverse = _unpack(args)
        T = x.shape[0]
        H = hx.shape[-1]
        h, c = to_ball(hx), to_ball(cx)
        tan = tangents or {}
        B = next((t.shape[0] for t in tan.values() if t is not None), 0)
        dh = to_ball(tan[5]) if tan.get(5) is not None else (ball(np.zeros((B,) + hx.shape)) if B else None)
        dc = to_ball(tan[6]) if tan.get(6) is not None else (ball(np.zeros((B,) + cx.shape)) if B else None)
        outs, douts = [None] * T, [None] * T
        order = range(T - 1, -1, -1) if reverse else range(T)
        for t in order:
            xt = x[t]
            g = _mm_t(xt, w_ih) + _mm_t(h, w_hh)
            if b_ih is not None:
                g = g + to_ball(b_ih) + to_ball(b_hh)
            gi, gf, gg, go = (g[..., k * H:(k + 1) * H] for k in range(4))
            si, sf, tg, so = _sig(gi), _sig(gf), _tanh(gg), _sig(go)
            c_new = sf * c + si * tg
            tc = _tanh(c_new)
            h_new = so * tc
            if B:
                # d gates = dx W_ih^T + x dW_ih^T + dh W_hh^T + h dW_hh^T + db_ih + db_hh
                dg = _mm_t(dh, w_hh)
                if tan.get(0) is not None:
                    dg = dg + _mm_t(to_ball(tan[0])[:, t], w_ih)
                if tan.get(1) is not None:
                    dg = dg + np.matmul(to_ball(xt)[None], np.swapaxes(to_ball(tan[1]), -1, -2))
                if tan.get(2) is not None:
                    dg = dg + np.matmul(h[None], np.swapaxes(to_ball(tan[2]), -1, -2))
                if tan.get(3) is not None:
                    dg = dg + to_ball(tan[3])[:, None, :]
                if tan.get(4) is not None:
                    dg = dg + to_ball(tan[4])[:, None, :]
                dgi, dgf, dgg, dgo = (dg[..., k * H:(k + 1) * H] for k in range(4))
                dsi, dsf, dso = si * (1.0 - si) * dgi, sf * (1.0 - sf) * dgf, so * (1.0 - so) * dgo
                dtg = (1.0 - tg * tg) * dgg
                dc = dsf * c[None] + sf[None] * dc + dsi * tg[None] + si[None] * dtg
                dh = dso * tc[None] + so[None] * (1.0 - tc * tc)[None] * dc
                douts[t] = dh
            outs[t] = h_new
            h, c = h_new, c_new
        out = np.stack(outs)
        if not B:
            return out, h, c
        return (out, h, c), (np.stack(douts, axis=1), dh, dc)

    def forward(self, ctx, args, kwargs):
        out, h, c = self._run(ctx, args)
        rec = ctx.recorded
        ws = rec[3].detach().numpy().copy() if isinstance(rec, (tuple, list)) else np.zeros((0,))
        return exactify(out), exactify(h), exactify(c), ws

    def jvp(self, ctx, args, kwargs, out, targs, tkwargs):
        tan = {i: (targs[i] if i < len(targs) and isinstance(targs[i], np.ndarray) else None) for i in range(7)}
        if all(v is None for v in tan.values()):
            return None, None, None, None
        _, (d_out, d_h, d_c) = self._run(ctx, args, tan)
        return d_out, d_h, d_c, None
