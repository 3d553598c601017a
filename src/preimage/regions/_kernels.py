"""Compiled loops of the 2-D partition: cutting shared-vertex polygons by neuron zero lines, clipping.

A partition is held as vertices ``P`` (nv, 2) in slice coordinates with the current layer's
pre-activations ``Z`` (nv, m) at each vertex, and faces as index cycles (``face_ptr`` (nf + 1,),
``face_vtx`` (total,)) into those vertices. Neighbouring faces share the vertices of their common edge:
the point where a neuron's zero line crosses an edge is made once (keyed by the edge's end points) and
used by both faces. Inside a face every pre-activation is affine, so its vertex values decide its signs.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _grow_rows(a, n):
    out = np.empty((max(2 * a.shape[0], n), a.shape[1]), a.dtype)
    out[: a.shape[0]] = a
    return out


@njit(cache=True)
def _grow(a, n):
    out = np.empty(max(2 * a.shape[0], n), a.dtype)
    out[: a.shape[0]] = a
    return out


@njit(cache=True)
def cut_layer(P, Z, nv, face_ptr, face_vtx, tol):
    """Cut every face by the zero line of every unit of one layer.

    P : (cap, 2) vertex coordinates, Z : (cap, m) pre-activations, the first ``nv`` rows in use.
    face_ptr : (nf + 1,), face_vtx : (total,) the faces' vertex cycles (counter-clockwise).
    tol : (m,) a value with ``|z| <= tol`` lies on the zero line.

    Returns ``(P, Z, nv, out_ptr, out_vtx, parent, bits)``: the grown vertex arrays, the new faces,
    ``parent`` (nf_new,) the face each came from, and ``bits`` (nf_new, ceil(m / 8)) uint8, the layer's
    pattern of each new face (unit j at bit j % 8 of byte j // 8; 1: pre-activation > 0 inside).
    """
    m = Z.shape[1]
    nbytes = (m + 7) // 8
    nf = face_ptr.size - 1
    cap_f = 2 * nf + 16
    out_ptr = np.empty(cap_f + 1, np.int64)
    out_ptr[0] = 0
    parent = np.empty(cap_f, np.int64)
    bits = np.zeros((cap_f, nbytes), np.uint8)
    out_vtx = np.empty(2 * face_vtx.size + 64, np.int64)
    n_out = 0
    n_vtx = 0
    # Cut points made so far, per edge (lo, hi): a linked list from ``head[lo]`` of (hi, point) entries.
    head = np.full(P.shape[0], -1, np.int64)
    link = np.empty(1024, np.int64)
    link_hi = np.empty(1024, np.int64)
    link_point = np.empty(1024, np.int64)
    n_links = 0
    stack = np.empty(1024, np.int64)      # vertex ids of the pending faces, back to back
    stack_start = np.empty(256, np.int64)
    stack_len = np.empty(256, np.int64)
    stack_unit = np.empty(256, np.int64)
    pos = np.empty(64, np.int64)
    neg = np.empty(64, np.int64)
    for f in range(nf):
        length = face_ptr[f + 1] - face_ptr[f]
        if stack.size < length:
            stack = _grow(stack, length)
        stack[:length] = face_vtx[face_ptr[f]: face_ptr[f + 1]]
        depth = 1
        stack_start[0] = 0
        stack_len[0] = length
        stack_unit[0] = 0
        while depth > 0:
            depth -= 1
            start = stack_start[depth]
            k = stack_len[depth]
            j0 = stack_unit[depth]
            top = start
            cut = -1
            for j in range(j0, m):
                has_pos = False
                has_neg = False
                for i in range(k):
                    z = Z[stack[start + i], j]
                    if z > tol[j]:
                        has_pos = True
                    elif z < -tol[j]:
                        has_neg = True
                if has_pos and has_neg:
                    cut = j
                    break
            if cut < 0:
                if n_out >= cap_f:
                    cap_f *= 2
                    out_ptr = _grow(out_ptr, cap_f + 1)
                    parent = _grow(parent, cap_f)
                    bits = _grow_rows(bits, cap_f)
                if n_vtx + k > out_vtx.size:
                    out_vtx = _grow(out_vtx, n_vtx + k)
                for i in range(k):
                    out_vtx[n_vtx + i] = stack[start + i]
                n_vtx += k
                parent[n_out] = f
                bits[n_out, :] = 0
                for j in range(m):
                    total = 0.0
                    for i in range(k):
                        total += Z[stack[start + i], j]
                    if total > 0.0:
                        bits[n_out, j // 8] |= np.uint8(1 << (j % 8))
                n_out += 1
                out_ptr[n_out] = n_vtx
                continue
            if pos.size < 2 * k + 2:
                pos = np.empty(2 * k + 2, np.int64)
                neg = np.empty(2 * k + 2, np.int64)
            n_pos = 0
            n_neg = 0
            for i in range(k):
                a = stack[start + i]
                b = stack[start + (i + 1) % k]
                za = Z[a, cut]
                zb = Z[b, cut]
                sa = 1 if za > tol[cut] else (-1 if za < -tol[cut] else 0)
                sb = 1 if zb > tol[cut] else (-1 if zb < -tol[cut] else 0)
                if sa >= 0:
                    pos[n_pos] = a
                    n_pos += 1
                if sa <= 0:
                    neg[n_neg] = a
                    n_neg += 1
                if sa * sb < 0:
                    lo = min(a, b)
                    hi = max(a, b)
                    p = -1
                    e = head[lo]
                    while e >= 0:
                        if link_hi[e] == hi:
                            p = link_point[e]
                            break
                        e = link[e]
                    if p < 0:
                        if nv >= P.shape[0]:
                            P = _grow_rows(P, nv + 1)
                            Z = _grow_rows(Z, nv + 1)
                            grown = np.full(P.shape[0], -1, np.int64)
                            grown[: head.size] = head
                            head = grown
                        lam = Z[lo, cut] / (Z[lo, cut] - Z[hi, cut])
                        for c in range(2):
                            P[nv, c] = P[lo, c] + lam * (P[hi, c] - P[lo, c])
                        for c in range(m):
                            Z[nv, c] = Z[lo, c] + lam * (Z[hi, c] - Z[lo, c])
                        Z[nv, cut] = 0.0
                        p = nv
                        nv += 1
                        if n_links >= link.size:
                            link = _grow(link, n_links + 1)
                            link_hi = _grow(link_hi, n_links + 1)
                            link_point = _grow(link_point, n_links + 1)
                        link[n_links] = head[lo]
                        link_hi[n_links] = hi
                        link_point[n_links] = p
                        head[lo] = n_links
                        n_links += 1
                    pos[n_pos] = p
                    n_pos += 1
                    neg[n_neg] = p
                    n_neg += 1
            need = top + n_pos + n_neg
            if stack.size < need:
                stack = _grow(stack, need)
            if depth + 2 > stack_start.size:
                stack_start = _grow(stack_start, depth + 2)
                stack_len = _grow(stack_len, depth + 2)
                stack_unit = _grow(stack_unit, depth + 2)
            for i in range(n_neg):
                stack[top + i] = neg[i]
            stack_start[depth] = top
            stack_len[depth] = n_neg
            stack_unit[depth] = cut + 1
            depth += 1
            top += n_neg
            for i in range(n_pos):
                stack[top + i] = pos[i]
            stack_start[depth] = top
            stack_len[depth] = n_pos
            stack_unit[depth] = cut + 1
            depth += 1
            top += n_pos
    return P, Z, nv, out_ptr[: n_out + 1].copy(), out_vtx[:n_vtx].copy(), parent[:n_out].copy(), bits[:n_out].copy()


@njit(cache=True)
def face_fits(P, Y, face_ptr, face_vtx):
    """Per face, the affine map of the outputs in slice coordinates, fitted to its vertices exactly.

    P : (nv, 2), Y : (nv, k) outputs at the vertices. Returns ``(G, c, centre)``: G (nf, k, 2) the
    Jacobian in (s, t), c (nf, k) the value at the face's vertex mean ``centre`` (nf, 2).
    """
    nf = face_ptr.size - 1
    k = Y.shape[1]
    G = np.zeros((nf, k, 2))
    c = np.zeros((nf, k))
    centre = np.zeros((nf, 2))
    for f in range(nf):
        lo = face_ptr[f]
        hi = face_ptr[f + 1]
        n = hi - lo
        ms = 0.0
        mt = 0.0
        for i in range(lo, hi):
            ms += P[face_vtx[i], 0]
            mt += P[face_vtx[i], 1]
        ms /= n
        mt /= n
        centre[f, 0] = ms
        centre[f, 1] = mt
        a11 = 0.0
        a12 = 0.0
        a22 = 0.0
        for i in range(lo, hi):
            ds = P[face_vtx[i], 0] - ms
            dt = P[face_vtx[i], 1] - mt
            a11 += ds * ds
            a12 += ds * dt
            a22 += dt * dt
        det = a11 * a22 - a12 * a12
        for o in range(k):
            my = 0.0
            for i in range(lo, hi):
                my += Y[face_vtx[i], o]
            my /= n
            c[f, o] = my
            r1 = 0.0
            r2 = 0.0
            for i in range(lo, hi):
                dy = Y[face_vtx[i], o] - my
                r1 += (P[face_vtx[i], 0] - ms) * dy
                r2 += (P[face_vtx[i], 1] - mt) * dy
            if det > 0.0:
                G[f, o, 0] = (a22 * r1 - a12 * r2) / det
                G[f, o, 1] = (a11 * r2 - a12 * r1) / det
    return G, c, centre


@njit(cache=True)
def _clip(poly, n, g, c0, tol):
    """Keep the part of the convex polygon ``poly[:n]`` (rows (s, t)) where ``g . p + c0 >= -tol``."""
    out = np.empty((2 * n + 2, 2))
    m = 0
    for i in range(n):
        a = poly[i]
        b = poly[(i + 1) % n]
        va = g[0] * a[0] + g[1] * a[1] + c0
        vb = g[0] * b[0] + g[1] * b[1] + c0
        if va >= -tol:
            out[m] = a
            m += 1
        if (va > tol and vb < -tol) or (va < -tol and vb > tol):
            lam = va / (va - vb)
            out[m, 0] = a[0] + lam * (b[0] - a[0])
            out[m, 1] = a[1] + lam * (b[1] - a[1])
            m += 1
    return out, m


@njit(cache=True)
def decision_segments(P, face_ptr, face_vtx, faces, G, c, centre, tol):
    """The decision boundary inside the given faces: segments where two outputs tie for the largest.

    faces : (q,) the faces to scan; G, c, centre : from :func:`face_fits` (scores of classes). A class's
    winning set inside a face is the face clipped by ``y_c >= y_j`` for every j; its edges on which
    ``y_c = y_j`` (c < j) are boundary segments. Returns (r, 2, 2) segment end points in (s, t).
    """
    k = G.shape[1]
    segments = np.empty((16, 2, 2))
    count = 0
    for q in range(faces.size):
        f = faces[q]
        lo = face_ptr[f]
        n = face_ptr[f + 1] - lo
        base = np.empty((n, 2))
        for i in range(n):
            base[i] = P[face_vtx[lo + i]]
        for cls in range(k):
            poly = base.copy()
            m = n
            for j in range(k):
                if j == cls or m == 0:
                    continue
                g = G[f, cls] - G[f, j]
                c0 = (c[f, cls] - c[f, j]) - g[0] * centre[f, 0] - g[1] * centre[f, 1]
                poly, m = _clip(poly, m, g, c0, tol)
            if m < 2:
                continue
            for i in range(m):
                a = poly[i]
                b = poly[(i + 1) % m]
                for j in range(cls + 1, k):
                    g = G[f, cls] - G[f, j]
                    c0 = (c[f, cls] - c[f, j]) - g[0] * centre[f, 0] - g[1] * centre[f, 1]
                    va = g[0] * a[0] + g[1] * a[1] + c0
                    vb = g[0] * b[0] + g[1] * b[1] + c0
                    length = abs(a[0] - b[0]) + abs(a[1] - b[1])
                    if abs(va) <= tol and abs(vb) <= tol and length > tol:
                        if count >= segments.shape[0]:
                            grown = np.empty((2 * count, 2, 2))
                            grown[:count] = segments[:count]
                            segments = grown
                        segments[count, 0] = a
                        segments[count, 1] = b
                        count += 1
                        break
    return segments[:count].copy()
