"""Realistic mutants inside the solution regions: is each one caught by a graded test? (issue 13, item 2)

``grader.authoring.coverage`` stubs a whole region; a test suite can catch every stub and still miss the bugs students
actually write. This module applies one small, realistic change at a time inside one region of
``reference/`` and runs the graded tests against it, the way the coverage run does (the test files that
mention the region first, non-convergence before convergence, ``-x``, ``--isolation=none``):

=============  ==========================================================================================
operator       change (one AST node)
=============  ==========================================================================================
sign           ``a + b`` <-> ``a - b`` (also ``+=`` <-> ``-=``); ``-x`` -> ``x``
off_by_one     an integer constant ``n`` -> ``n + 1`` / ``n - 1``; ``range(.., n)`` -> ``range(.., n - 1)``
mask           ``a * (1 - d)`` -> ``a`` (the done/mask factor dropped)
detach         ``x.detach()`` -> ``x``; ``with torch.no_grad(): body`` -> ``body``
exponent       ``x ** k`` -> ``x ** 1``; ``sqrt(x)``, ``x.sqrt()``, ``square(x)`` -> ``x``
swap_args      ``f(a, b, ...)`` -> ``f(b, a, ...)`` when ``a`` and ``b`` differ
reduction      ``.mean(`` <-> ``.sum(``
clone          ``x.clone()``, ``x.copy()`` -> ``x`` (a later in-place change reaches the caller's object)
inplace        ``x.clamp(...)``, ``x.add(...)``, ... on a name -> ``x.clamp_(...)`` (changes ``x`` itself)
global_rng     ``generator=g`` dropped (torch's global generator); ``rng.integers(..)``, ``rng.normal(..)``,
               ... -> ``np.random.randint(..)``, ``np.random.normal(..)`` (numpy's global generator)
shared_noise   ``torch.randn(n, d, ...)`` -> ``torch.randn(1, d, ...)``; ``randn_like(x)`` ->
               ``randn_like(x[..., :1])`` (one draw broadcast across rows / the last dimension)
finite         ``isfinite(x)`` -> ``~isnan(x)`` (±inf let through)
sample         ``reparameterize(mean, log_var)`` -> ``mean`` (the posterior mean where a sample belongs)
=============  ==========================================================================================

The last six (issue 23) express the bug kinds operator mutants missed before: caller-visible side effects,
randomness from the wrong source, wrongly shared noise, non-finite values other than NaN, and a mean used
where a sample is specified.

A mutant's id is ``path:qualname:line:operator`` (``#2``, ``#3``... for further mutants of the same operator
on the same line, in column order), stable while the region's code is. Mutated sources are made by
splicing the unparsed node into the original text, so everything else stays byte for byte.

Parsing happens in the main thread only (CPython 3.11's ``ast.parse`` is not thread-safe,
python/cpython#106905); parallel runs (``--jobs``) use processes, each running pytest in a subprocess.
Results are cached in ``build/mutants-cache.json``, each under a digest of the files that decide it
(:func:`mutant_key`), so an interrupted sweep resumes and editing one component's tests re-runs only its mutants.

    python -m grader.authoring.mutants [--only SUBSTRING] [--jobs N] [--list] [--scope near|all] [--timeout S]

A full run writes ``docs/mutants.md`` (the table) and ``docs/mutants.json`` (stamped with
:func:`grader.authoring.coverage.inputs_digest`, like ``docs/coverage.json``). Mutants that no correct test can
catch (same behaviour) are listed in :data:`EQUIVALENT` with the reason, and are not run.
"""

from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from grader.authoring.coverage import (DIGEST_FILES, MutantTimeout, files_digest, first_failure, inputs_digest, search_plan,
                             write_record)
from grader.authoring.generate import REPO, Region, _files, find_regions

OPERATORS: tuple[str, ...] = ("sign", "off_by_one", "mask", "detach", "exponent", "swap_args", "reduction",
                               "clone", "inplace", "global_rng", "shared_noise", "finite", "sample")
JSON_RECORD = REPO / "docs" / "mutants.json"
MD_RECORD = REPO / "docs" / "mutants.md"
CACHE = REPO / "build" / "mutants-cache.json"

#: Mutants that behave exactly like the reference (no test can tell them apart): id -> why.
EQUIVALENT: dict[str, str] = {
    "hierarchical_rl/goal_conditioned.py:her_critic_targets:203:inplace": (
        "y = rewards + gamma * (1 - dones) * next_q two lines above is a fresh tensor: clamping it in place "
        "changes no caller's object"
    ),
    "hierarchical_rl/hac.py:hac_critic_target:170:inplace": (
        "target = rewards + gamma * (1 - dones) * next_q on the line above is a fresh tensor: clamping it in place "
        "changes no caller's object"
    ),
    "hierarchical_rl/hac.py:hindsight_action_transition:203:swap_args": (
        "hac_goal_achieved(goal, next_achieved_goal, threshold): |a - b| <= threshold is symmetric in a and b"
    ),
    "hierarchical_rl/hac.py:hindsight_goal_transition:235:swap_args": (
        "hac_goal_achieved(new_goal, next_achieved_goal, threshold): |a - b| <= threshold is symmetric in a and b"
    ),
    "model_based_rl/dyna_q.py:epsilon_greedy_action:149:off_by_one#2": (
        "q was reshaped to one dimension two lines above, so q.shape[-1] is q.shape[0]"
    ),
    "model_based_rl/dynamics.py:DynamicsModel.loss:322:sign": (
        "next_states and rewards are both reshaped to (B, .) above, so cat(dim=1) is cat(dim=-1)"
    ),
    "model_based_rl/mpc.py:ModelPredictiveController._plan_cem:299:swap_args": (
        "torch.max(a, b) is elementwise and symmetric in a and b (same broadcast shape either way)"
    ),
    "model_based_rl/mpc.py:ModelPredictiveController._plan_cem:299:swap_args#2": (
        "torch.min(a, b) is elementwise and symmetric in a and b (same broadcast shape either way)"
    ),
    "model_based_rl/mpc.py:ModelPredictiveController._plan_cem:299:sign": (
        "mean - std * noise with noise ~ N(0, I) has the distribution of mean + std * noise (noise is symmetric); "
        "a test that told them apart would also fail a correct implementation that draws its noise in another order"
    ),
    "model_based_rl/mpc.py:shift_plan:86:sign": (
        "mean is the (H, A) plan, two-dimensional, so mean.shape[1] is mean.shape[-1]"
    ),
    "model_based_rl/dynamics.py:DynamicsModel.sample_prediction:294:sign": (
        "mean - std * eps with eps ~ N(0, I) independent of the reward's noise has the distribution of "
        "mean + std * eps; only a test bound to one random draw could tell them apart"
    ),
    "model_based_rl/dynamics.py:DynamicsModel.sample_prediction:295:sign": (
        "reward_mean - reward_std * eps with eps ~ N(0, I) has the distribution of reward_mean + reward_std * eps "
        "(and stays independent of the next state's noise)"
    ),
    "model_based_rl/dynamics.py:DynamicsModel.sample_prediction:295:sign#2": (
        "the reward column is (B, 1), so squeeze(1) is squeeze(-1)"
    ),
    "model_based_rl/ensemble.py:ModelEnsemble.propagate:467:sign": (
        "mean - std * noise with noise ~ N(0, I) has the distribution of mean + std * noise (noise is symmetric)"
    ),
    "planning/latent_planner.py:sample_action_sequences:76:swap_args": (
        "torch.maximum(a, b) is elementwise and symmetric in a and b (same broadcast shape either way)"
    ),
    "planning/latent_planner.py:sample_action_sequences:76:swap_args#2": (
        "torch.minimum(a, b) is elementwise and symmetric in a and b (same broadcast shape either way)"
    ),
    "planning/mcts.py:ucb_score:84:swap_args": "max(parent_visits, 1) is max(1, parent_visits)",
    "planning/mcts.py:ucb_score:84:off_by_one#2": (
        "max(parent_visits, 0) differs from max(parent_visits, 1) only when parent_visits = 0 < child_visits, "
        "which no tree reaches (a child is never visited more often than its parent)"
    ),
    "planning/mcts.py:select_child:245:off_by_one#2": (
        "with len(ties) == 0 never true, a single tie is returned as ties[rng.integers(1)] = ties[0]: the same "
        "child, one more draw from rng (no test may depend on how many draws an implementation makes)"
    ),
    "planning/world_model.py:WorldModel.imagine:287:sign": (
        "predict_reward returns (B, 1), so squeeze(1) is squeeze(-1)"
    ),
    "planning/world_model.py:WorldModel.loss:231:sign#2": (
        "decode(z) - states is (B, S), two-dimensional, so sum(dim=1) is sum(dim=-1)"
    ),
    "hierarchical_rl/goal_conditioned.py:relabel_episode:167:off_by_one#4": (
        "np.repeat(x[:, None], k, axis=0) has shape (T*k, 1, G) instead of (T, k, G), but the only use reshapes "
        "it to (T*k, G), and both orders flatten to the same rows (each of the T rows repeated k times)"
    ),
    "hierarchical_rl/feudal.py:fun_intrinsic_reward:119:swap_args#2": "min(n - 1, c) is min(c, n - 1)",
    "hierarchical_rl/feudal.py:fun_intrinsic_reward:119:sign#2": (
        "the extra horizons i = n, n + 1 of range(1, min(c, n + 1) + 1) slice empty tensors (states[i:] with "
        "i >= n), so they add nothing; the mean still divides by c"
    ),
    "hierarchical_rl/feudal.py:fun_intrinsic_reward:119:off_by_one#5": (
        "the extra horizon i = n of range(1, min(c, n) + 1) slices empty tensors (states[n:]), adding nothing"
    ),
    "hierarchical_rl/feudal.py:fun_transition_policy_loss:150:swap_args": (
        "cosine_similarity(a, b) is symmetric in a and b"
    ),
    "hierarchical_rl/feudal.py:fun_transition_policy_loss:150:sign": (
        "direction and goals are (T, D), two-dimensional, so dim=1 is dim=-1"
    ),
    "hierarchical_rl/feudal.py:fun_intrinsic_reward:120:swap_args": "cosine_similarity(a, b) is symmetric in a and b",
    "planning/world_model.py:WorldModel.loss:235:sign#2": (
        "the latent error is (B, Z), two-dimensional, so sum(dim=1) is sum(dim=-1)"
    ),
    "hierarchical_rl/feudal.py:fun_intrinsic_reward:120:sign#4": (
        "the state differences and goals are (N - i, D), two-dimensional, so dim=1 is dim=-1"
    ),
    "planning/world_model.py:WorldModel.loss:236:swap_args": (
        "F.mse_loss(a, b) is symmetric in a and b (value and gradient; the rewards need no gradient)"
    ),
    "planning/world_model.py:WorldModel.loss:236:sign": "predict_reward returns (B, 1), so squeeze(1) is squeeze(-1)",
    "planning/latent_planner.py:sample_action_sequences:75:sign": (
        "mean - std * eps with eps ~ N(0, I) has the distribution of mean + std * eps (eps is symmetric); a "
        "test that told them apart would also fail a correct implementation that draws its noise in another order"
    ),
    "planning/world_model.py:WorldModel.reparameterize:147:sign": (
        "mean - std * eps with eps ~ N(0, I) has the distribution of mean + std * eps, and so has its gradient "
        "with respect to mean and log_var; only a test bound to one random draw could tell them apart"
    ),
}


@dataclass(frozen=True)
class Mutant:
    """One mutated version of one file of the reference: ``source`` is the whole mutated file."""

    id: str
    region: Region
    line: int
    operator: str
    description: str
    source: str


@dataclass(frozen=True)
class Outcome:
    """What the graded tests did with a mutant: ``status`` is caught, survived, timeout, equivalent or
    not_run (the sweep's ``--budget`` was spent first)."""

    id: str
    status: str
    caught_by: str | None
    seconds: float
    note: str = ""


# ----------------------------------------------------------------------------------------------- generation


@dataclass(frozen=True)
class _Edit:
    """Replace the text from (line, byte column) ``start`` to ``end`` (1-based lines) by ``text``."""

    start: tuple[int, int]
    end: tuple[int, int]
    text: str


def _apply(source: str, edit: _Edit) -> str:
    """``source`` with ``edit`` applied (columns are UTF-8 byte offsets, as in ``ast``)."""
    lines = source.encode("utf-8").splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    data = source.encode("utf-8")
    a = starts[edit.start[0] - 1] + edit.start[1]
    b = starts[edit.end[0] - 1] + edit.end[1]
    return (data[:a] + edit.text.encode("utf-8") + data[b:]).decode("utf-8")


def _span(node: ast.AST) -> tuple[tuple[int, int], tuple[int, int]]:
    return (node.lineno, node.col_offset), (node.end_lineno or node.lineno, node.end_col_offset or 0)


def _same(a: ast.AST, b: ast.AST) -> bool:
    return ast.dump(a) == ast.dump(b)


def _same_statement(tree: ast.Module, mutated: ast.Module, line: int, tops: dict[int, str]) -> bool:
    """Whether ``mutated`` has the AST of ``tree``, for an edit inside the top-level statement holding ``line``
    (the other statements are the same text, so only that one is compared; ``tops`` caches its dump)."""
    if len(mutated.body) != len(tree.body):
        return False
    k = next(i for i, stmt in enumerate(tree.body) if stmt.lineno <= line <= (stmt.end_lineno or stmt.lineno))
    if k not in tops:
        tops[k] = ast.dump(tree.body[k])
    return ast.dump(mutated.body[k]) == tops[k]


def _expr_edit(source: str, node: ast.AST, new: ast.AST) -> tuple[str, ast.Module] | None:
    """Splice ``new`` (an expression or a one-line statement) over ``node``: the mutated source and its tree;
    parenthesised where the bare text would bind differently in its context. ``None`` when neither form
    parses to ``new``."""
    start, end = _span(node)
    bare = ast.unparse(new)
    for text in (bare, f"({bare})"):
        mutated = _apply(source, _Edit(start, end, text))
        try:
            tree = ast.parse(mutated)
        except SyntaxError:
            continue
        if any(
            _same(n, new) for n in ast.walk(tree) if getattr(n, "lineno", None) == start[0]
            and getattr(n, "col_offset", None) in (start[1], start[1] + 1)
        ):
            return mutated, tree
    return None


def _unwrap_with(source: str, node: ast.With) -> str:
    """``source`` with the ``with`` statement ``node`` replaced by its body, dedented to the ``with``."""
    lines = source.splitlines(keepends=True)
    shift = node.body[0].col_offset - node.col_offset
    body = lines[node.body[0].lineno - 1 : node.end_lineno]
    dedented = [line[shift:] if line[:shift].strip() == "" else line for line in body]
    return "".join(lines[: node.lineno - 1] + dedented + lines[node.end_lineno :])


def _call_name(node: ast.Call) -> str | None:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def _is_mask(node: ast.AST) -> bool:
    """``1 - x`` or ``1.0 - x``: a done/mask complement."""
    return (
        isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub) and isinstance(node.left, ast.Constant)
        and not isinstance(node.left.value, bool) and node.left.value == 1
    )  # fmt: skip


def _int_literal(value: int) -> ast.expr:
    """The node that the literal ``value`` parses to (``-1`` is a unary minus applied to ``1``)."""
    return ast.Constant(value) if value >= 0 else ast.UnaryOp(ast.USub(), ast.Constant(-value))


def _with(node: ast.AST, **changes: object) -> ast.AST:
    new = copy.deepcopy(node)
    for name, value in changes.items():
        setattr(new, name, value)
    return new


_SIGN = {ast.Add: ast.Sub, ast.Sub: ast.Add}
#: Out-of-place tensor methods whose in-place twin (``name_``) a student writes by mistake.
_INPLACE = ("clamp", "clamp_min", "clamp_max", "clip", "add", "sub", "mul", "div", "masked_fill", "neg")
#: numpy Generator methods -> the legacy global function that draws the same kind of numbers.
_NUMPY_GLOBAL = {"integers": "randint", "random": "random", "normal": "normal", "standard_normal": "standard_normal",
                 "uniform": "uniform", "choice": "choice", "permutation": "permutation", "shuffle": "shuffle",
                 "exponential": "exponential"}  # fmt: skip
_NOISE = ("randn", "rand", "normal")
#: Names of modules, not tensors: ``torch.clamp(x, ..)`` has no receiver an in-place twin could change.
_MODULES = ("torch", "np", "numpy", "F", "math", "nn")
_REDUCTION = {"mean": "sum", "sum": "mean"}
_SYMBOL = {ast.Add: "+", ast.Sub: "-"}


def _candidates(node: ast.AST) -> Iterator[tuple[str, ast.AST | None, str]]:
    """(operator, replacement node, what changes) for every mutant of ``node`` itself; a ``None`` replacement
    stands for "the body of this ``with``"."""
    if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in _SIGN:
        flip = _SIGN[type(node.op)]
        yield "sign", _with(node, op=flip()), f"{_SYMBOL[type(node.op)]} -> {_SYMBOL[flip]}"
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        yield "sign", node.operand, "unary minus dropped"
    if isinstance(node, ast.Constant) and type(node.value) is int:
        for value in (node.value + 1, node.value - 1):
            yield "off_by_one", _int_literal(value), f"{node.value} -> {value}"
    if isinstance(node, ast.Call) and _call_name(node) == "range" and 1 <= len(node.args) <= 3:
        stop = 0 if len(node.args) == 1 else 1
        args = list(node.args)
        args[stop] = ast.BinOp(args[stop], ast.Sub(), ast.Constant(1))
        yield "off_by_one", _with(node, args=args), "range stop - 1"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        if _is_mask(node.right):
            yield "mask", node.left, f"factor {ast.unparse(node.right)} dropped"
        if _is_mask(node.left):
            yield "mask", node.right, f"factor {ast.unparse(node.left)} dropped"
    if isinstance(node, ast.Call):
        name = _call_name(node)
        method = isinstance(node.func, ast.Attribute)
        if name == "detach" and method and not node.args and not node.keywords:
            yield "detach", node.func.value, ".detach() removed"
        if name in ("sqrt", "square"):
            if method and not node.args and not node.keywords:
                yield "exponent", node.func.value, f".{name}() removed"
            elif len(node.args) == 1 and not node.keywords:
                yield "exponent", node.args[0], f"{name}(x) -> x"
        if name == "pow" and method and len(node.args) == 1:
            yield "exponent", _with(node, args=[ast.Constant(1)]), ".pow(k) -> .pow(1)"
        if name in _REDUCTION and method:
            func = _with(node.func, attr=_REDUCTION[name])
            yield "reduction", _with(node, func=func), f".{name}( -> .{_REDUCTION[name]}("
        first_two = node.args[:2]
        if len(first_two) == 2 and not any(isinstance(a, ast.Starred) for a in first_two):
            if not _same(first_two[0], first_two[1]):
                args = [node.args[1], node.args[0], *node.args[2:]]
                yield "swap_args", _with(node, args=args), "first two arguments swapped"
    if isinstance(node, ast.Call):
        yield from _issue23_candidates(node)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        if not (isinstance(node.right, ast.Constant) and node.right.value == 1):
            yield "exponent", _with(node, right=ast.Constant(1)), f"** {ast.unparse(node.right)} -> ** 1"
    if isinstance(node, ast.With) and len(node.items) == 1:
        ctx = node.items[0].context_expr
        if isinstance(ctx, ast.Call) and _call_name(ctx) in ("no_grad", "inference_mode"):
            yield "detach", None, f"with {ast.unparse(ctx)}: removed"


def _is_rng(node: ast.AST) -> bool:
    """``rng`` or ``<anything>.rng``: the numpy Generator a function or object was given."""
    return (isinstance(node, ast.Name) and node.id == "rng") or (isinstance(node, ast.Attribute) and node.attr == "rng")


def _issue23_candidates(node: ast.Call) -> Iterator[tuple[str, ast.AST, str]]:
    """The mutants of a call for the bug kinds of issue 23 (see the module's table)."""
    name = _call_name(node)
    method = isinstance(node.func, ast.Attribute)
    if method and name in ("clone", "copy") and not node.args and not node.keywords:
        yield "clone", node.func.value, f".{name}() removed"
    if method and name in _INPLACE and isinstance(node.func.value, ast.Name) and node.func.value.id not in _MODULES:
        yield "inplace", _with(node, func=_with(node.func, attr=f"{name}_")), f".{name}( -> .{name}_("
    if any(k.arg == "generator" for k in node.keywords):
        keywords = [k for k in node.keywords if k.arg != "generator"]
        yield "global_rng", _with(node, keywords=keywords), "generator= dropped (torch's global generator)"
    if method and name in _NUMPY_GLOBAL and _is_rng(node.func.value):
        func = ast.Attribute(ast.Attribute(ast.Name("np", ast.Load()), "random", ast.Load()), _NUMPY_GLOBAL[name],
                             ast.Load())  # fmt: skip
        yield "global_rng", _with(node, func=func), f"{ast.unparse(node.func)}( -> np.random.{_NUMPY_GLOBAL[name]}("
    if name in _NOISE and (name != "normal" or method and isinstance(node.func.value, ast.Name)
                           and node.func.value.id == "torch"):  # fmt: skip
        positional = [a for a in node.args if not isinstance(a, ast.Starred)]
        if len(node.args) >= 2 and len(positional) == len(node.args) and name != "normal":
            yield "shared_noise", _with(node, args=[ast.Constant(1), *node.args[1:]]), "first size -> 1 (broadcast)"
        elif len(node.args) == 1 and isinstance(node.args[0], ast.Tuple) and node.args[0].elts \
                and not isinstance(node.args[0].elts[0], ast.Starred):  # fmt: skip
            shape = _with(node.args[0], elts=[ast.Constant(1), *node.args[0].elts[1:]])
            yield "shared_noise", _with(node, args=[shape]), "first size -> 1 (broadcast)"
    if name in ("randn_like", "rand_like") and len(node.args) == 1:
        sliced = ast.Subscript(node.args[0], ast.Tuple([ast.Constant(...), ast.Slice(None, ast.Constant(1))],
                                                       ast.Load()), ast.Load())  # fmt: skip
        yield "shared_noise", _with(node, args=[sliced]), f"{name}(x) -> {name}(x[..., :1]) (broadcast)"
    if name == "isfinite" and len(node.args) == 1 and not node.keywords:
        isnan = _with(node, func=_with(node.func, attr="isnan") if method else ast.Name("isnan", ast.Load()))
        yield "finite", ast.UnaryOp(ast.Invert(), isnan), "isfinite(x) -> ~isnan(x)"
    if name == "reparameterize" and node.args:
        yield "sample", node.args[0], "reparameterize(mean, ...) -> mean"


def _inside(node: ast.AST, region: Region) -> bool:
    lineno, end = getattr(node, "lineno", None), getattr(node, "end_lineno", None)
    return lineno is not None and end is not None and region.begin < lineno and end < region.end


def mutants_of_source(source: str, path: str = "<string>", operators: tuple[str, ...] = OPERATORS) -> list[Mutant]:
    """Every mutant of the solution regions of ``source``, in (line, column, operator) order, with unique ids.

    Each mutant changes exactly one node that lies inside one region; mutants that leave the file's AST
    unchanged, or repeat an earlier mutant's source, are dropped. Call from one thread only.

    Raises:
        grader.authoring.generate.MarkerError: for marker problems (as the generator).
        ValueError: ``operators`` names an unknown operator.
    """
    unknown = sorted(set(operators) - set(OPERATORS))
    if unknown:
        raise ValueError(f"operators: expected names from {list(OPERATORS)}, got unknown {unknown}")
    regions = find_regions(source, path)
    if not regions:
        return []
    tree = ast.parse(source)
    tops: dict[int, str] = {}  # index of a top-level statement -> its dump (the edits stay inside one)
    found: list[tuple[tuple, str, Region, int, str, str]] = []
    seen: set[str] = set()
    for region in regions:
        nodes = [n for n in ast.walk(tree) if _inside(n, region)]
        nodes.sort(key=lambda n: (n.lineno, n.col_offset, -(n.end_lineno or 0), -(n.end_col_offset or 0)))
        for node in nodes:
            for rank, (operator, new, description) in enumerate(_candidates(node)):
                if operator not in operators:
                    continue
                if new is None:
                    mutated = _unwrap_with(source, node)
                    mutated_tree = ast.parse(mutated)
                else:
                    spliced = _expr_edit(source, node, new)
                    if spliced is None:
                        continue
                    mutated, mutated_tree = spliced
                if mutated in seen or _same_statement(tree, mutated_tree, node.lineno, tops):
                    continue
                seen.add(mutated)
                order = (node.lineno, node.col_offset, OPERATORS.index(operator), rank)
                found.append((order, operator, region, node.lineno, description, mutated))
    found.sort(key=lambda f: f[0])
    out: list[Mutant] = []
    count: dict[str, int] = {}
    for _, operator, region, line, description, mutated in found:
        base = f"{path}:{region.qualname}:{line}:{operator}"
        count[base] = count.get(base, 0) + 1
        ident = base if count[base] == 1 else f"{base}#{count[base]}"
        out.append(Mutant(ident, region, line, operator, description, mutated))
    return out


def all_mutants(src: Path = REPO / "reference", only: str = "") -> list[Mutant]:
    """The mutants of every Python file under ``src`` whose id contains ``only``, in file order."""
    out: list[Mutant] = []
    for rel in _files(src):
        if rel.suffix == ".py":
            out += mutants_of_source((src / rel).read_text(encoding="utf-8"), rel.as_posix())
    return [m for m in out if only in m.id]


def diff_line(original: str, mutant: Mutant) -> str:
    """The mutated line as it reads after the change (first changed line, stripped)."""
    for a, b in zip(original.splitlines(), mutant.source.splitlines()):
        if a != b:
            return b.strip()
    return ""


# ---------------------------------------------------------------------------------------------------- running


def run_mutant(src: Path, mutant: Mutant, timeout: float, near_only: bool = True) -> Outcome:
    """Build the implementation root ``src`` with ``mutant`` applied and look for a graded test that fails.

    ``timeout`` (seconds) bounds all the pytest runs of this mutant; ``near_only`` limits them to the test
    files that mention the region (the component's own tests)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ca15-mutant-") as tmp:
        root = Path(tmp) / "impl"
        shutil.copytree(src, root, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (root / mutant.region.path).write_text(mutant.source, encoding="utf-8")
        try:
            caught = first_failure(root, mutant.region, timeout, near_only=near_only)
        except MutantTimeout as exc:
            return Outcome(mutant.id, "timeout", None, round(time.monotonic() - started, 1), str(exc))
    status = "caught" if caught else "survived"
    return Outcome(mutant.id, status, caught, round(time.monotonic() - started, 1))


def mutant_key(mutant: Mutant, near_only: bool, repo: Path = REPO) -> str:
    """SHA-256 (hex) of everything that decides ``mutant``'s outcome: the mutated file, the rest of
    ``reference/``, the harness (:data:`grader.authoring.coverage.DIGEST_FILES`), the graded tests' support modules and
    the test files its runs use (:func:`grader.authoring.coverage.search_plan`). Editing one component's tests leaves
    the other components' cached outcomes valid."""
    rels = set(DIGEST_FILES)
    rels.update(p.relative_to(repo).as_posix() for p in (repo / "reference").rglob("*.py") if "__pycache__" not in p.parts)
    for folder in ("tests/components", "tests/hidden"):
        rels.update(
            p.relative_to(repo).as_posix()
            for p in (repo / folder).glob("*.py")
            if not p.name.startswith("test_")  # support modules every test file may import
        )
    for files, _ in search_plan(mutant.region, near_only=near_only):
        rels.update(Path(f).resolve().relative_to(REPO).as_posix() for f in files)  # read from ``repo`` below
    return files_digest(repo, sorted(rels), hashlib.sha256(mutant.id.encode() + b"\0" + mutant.source.encode()))


def _load_cache(path: Path, keys: dict[str, str]) -> dict[str, Outcome]:
    """The cached outcomes whose key is still ``keys[id]`` (:func:`mutant_key`)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data.get("outcomes", {})
        return {k: Outcome(**v["outcome"]) for k, v in entries.items() if k in keys and v.get("key") == keys[k]}
    except (OSError, json.JSONDecodeError, AttributeError, KeyError, TypeError):
        return {}


def _save_cache(path: Path, keys: dict[str, str], outcomes: dict[str, Outcome]) -> None:
    """Merge ``outcomes`` (with their keys) into the cache at ``path``, keeping other mutants' entries."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8")).get("outcomes", {})
        entries = {k: v for k, v in entries.items() if isinstance(v, dict) and "key" in v}
    except (OSError, json.JSONDecodeError, AttributeError):
        entries = {}
    entries.update({k: {"key": keys[k], "outcome": asdict(v)} for k, v in outcomes.items()})
    write_record(path, {"outcomes": dict(sorted(entries.items()))})


def run_all(
    src: Path,
    mutants: list[Mutant],
    jobs: int = 1,
    timeout: float = 600,
    near_only: bool = True,
    cache: Path | None = CACHE,
    log: bool = True,
    budget: float | None = None,
) -> list[Outcome]:
    """Outcomes of ``mutants`` (in their order): :data:`EQUIVALENT` ones are not run, cached ones (same
    :func:`mutant_key` and scope) are reused, the rest run in ``jobs`` processes; none is started after
    ``budget`` seconds (those are ``not_run``; run again to resume from the cache)."""
    stop_at = None if budget is None else time.monotonic() + budget
    keys = {m.id: mutant_key(m, near_only) + ("" if near_only else ":all") for m in mutants if m.id not in EQUIVALENT}
    done = _load_cache(cache, keys) if cache else {}
    outcomes: dict[str, Outcome] = {}
    todo: list[Mutant] = []
    for m in mutants:
        if m.id in EQUIVALENT:
            outcomes[m.id] = Outcome(m.id, "equivalent", None, 0.0, EQUIVALENT[m.id])
        elif m.id in done:
            outcomes[m.id] = done[m.id]
        else:
            todo.append(m)
    todo = _interleaved(todo)

    def record(outcome: Outcome) -> None:
        outcomes[outcome.id] = outcome
        done[outcome.id] = outcome
        if cache:
            _save_cache(cache, keys, {outcome.id: outcome})
        if log:
            print(f"[{len(outcomes)}/{len(mutants)}] {outcome.status:<9} {outcome.seconds:>6.1f} s  {outcome.id}"
                  f"  {outcome.caught_by or outcome.note}", flush=True)  # fmt: skip

    def spent() -> bool:
        return stop_at is not None and time.monotonic() >= stop_at

    if jobs <= 1:
        for m in todo:
            if spent():
                break
            record(run_mutant(src, m, timeout, near_only))
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {m.id: pool.submit(_run_unless_spent, src, m, timeout, near_only, stop_at) for m in todo}
            for future in futures.values():
                outcome = future.result()
                if outcome is not None:
                    record(outcome)
    return [outcomes.get(m.id, Outcome(m.id, "not_run", None, 0.0)) for m in mutants]


def _interleaved(mutants: list[Mutant]) -> list[Mutant]:
    """``mutants`` in round-robin order over their regions (the first of each region, then the second...), so
    that a sweep stopped by its budget has sampled every region."""
    by_region: dict[tuple[str, int], list[Mutant]] = {}
    for m in mutants:
        by_region.setdefault((m.region.path, m.region.begin), []).append(m)
    rounds = max((len(v) for v in by_region.values()), default=0)
    return [group[i] for i in range(rounds) for group in by_region.values() if i < len(group)]


def _run_unless_spent(src: Path, mutant: Mutant, timeout: float, near_only: bool, stop_at: float | None) -> Outcome | None:
    """:func:`run_mutant` in a pool process, unless the sweep's budget (a ``time.monotonic`` instant) is spent."""
    if stop_at is not None and time.monotonic() >= stop_at:
        return None
    return run_mutant(src, mutant, timeout, near_only)


# --------------------------------------------------------------------------------------------------- reports


def summary(outcomes: list[Outcome]) -> dict[str, int]:
    """How many mutants ended in each status, and in all."""
    counts = {s: 0 for s in ("caught", "survived", "timeout", "equivalent", "not_run")}
    for o in outcomes:
        counts[o.status] += 1
    return {"mutants": len(outcomes), **counts}


def mutants_record(mutants: list[Mutant], outcomes: list[Outcome], digest: str, scope: str, timeout: float) -> dict:
    """The JSON object of ``docs/mutants.json``."""
    rows = [
        {"id": m.id, "operator": m.operator, "description": m.description, "status": o.status,
         "caught_by": o.caught_by, "seconds": o.seconds, "note": o.note}
        for m, o in zip(mutants, outcomes)
    ]  # fmt: skip
    return {"digest": digest, "scope": scope, "timeout": timeout, "summary": summary(outcomes), "mutants": rows}


def format_markdown(mutants: list[Mutant], outcomes: list[Outcome], src: Path, scope: str) -> str:
    """``docs/mutants.md``: the counts per operator and a table of every mutant (survivors first)."""
    originals = {m.region.path: (src / m.region.path).read_text(encoding="utf-8") for m in mutants}
    total = summary(outcomes)
    lines = [
        "# Mutants of the solution regions",
        "",
        "Written by `make mutants` (`python -m grader.authoring.mutants`); do not edit. Each mutant changes one AST node",
        "inside one `# BEGIN SOLUTION` region of `reference/`; the graded tests run against it "
        f"({'the test files that mention the region' if scope == 'near' else 'all graded tests'}, `-x`).",
        "Equivalent mutants (same behaviour) are listed with their reason in `grader/authoring/mutants.py` (`EQUIVALENT`).",
        "",
        f"**{total['caught']} caught, {total['survived']} survived, {total['timeout']} timed out, "
        f"{total['equivalent']} equivalent, {total['not_run']} not run (yet), of {total['mutants']} mutants.**",
        "",
        "| operator | mutants | caught | survived | timeout | equivalent | not run |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for op in OPERATORS:
        sub = summary([o for m, o in zip(mutants, outcomes) if m.operator == op])
        lines.append(f"| {op} | {sub['mutants']} | {sub['caught']} | {sub['survived']} | {sub['timeout']} "
                     f"| {sub['equivalent']} | {sub['not_run']} |")  # fmt: skip
    lines += ["", "| status | mutant | change | mutated line | caught by / note |", "|---|---|---|---|---|"]
    rank = {"survived": 0, "timeout": 1, "equivalent": 2, "caught": 3, "not_run": 4}
    pairs = sorted(zip(mutants, outcomes), key=lambda p: rank[p[1].status])
    for m, o in pairs:
        code = diff_line(originals[m.region.path], m).replace("|", "\\|")
        why = (o.caught_by or o.note).replace("|", "\\|")
        lines.append(f"| {o.status} | `{m.id}` | {m.description} | `{code}` | {why} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``make mutants``: generate, run and report the mutants; a full run writes docs/mutants.{md,json}."""
    parser = argparse.ArgumentParser(description="Realistic mutants inside the solution regions of reference/.")
    parser.add_argument("--src", type=Path, default=REPO / "reference", help="reference root (default: reference/)")
    parser.add_argument("--only", default="", help="only mutants whose id contains this (writes no docs)")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run in parallel processes (default: 1)")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--timeout", type=float, default=600, help="seconds for all test runs of one mutant")
    parser.add_argument(
        "--scope", choices=("near", "all"), default="near",
        help="near (default): the test files that mention the region; all: then every other graded test",
    )  # fmt: skip
    parser.add_argument("--budget", type=float, default=None, help="start no mutant after this many seconds")
    parser.add_argument("--no-cache", action="store_true", help=f"ignore and do not write {CACHE.name}")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs: expected a positive number of processes, got {args.jobs}")
    if args.timeout <= 0:
        parser.error(f"--timeout: expected a positive number of seconds, got {args.timeout}")
    mutants = all_mutants(args.src, args.only)
    if args.only and not mutants:
        parser.error(f"--only: expected a substring of some mutant id, got {args.only!r}, which matches none")
    if args.list:
        for m in mutants:
            print(f"{m.id}  {m.description}")
        print(f"{len(mutants)} mutants")
        return 0
    stale = sorted(set(EQUIVALENT) - {m.id for m in all_mutants(args.src)})
    if stale:
        print(f"warning: EQUIVALENT names mutants that no longer exist: {stale}", file=sys.stderr)
    digest = inputs_digest()
    started = time.monotonic()
    outcomes = run_all(args.src, mutants, args.jobs, args.timeout, args.scope == "near",
                       cache=None if args.no_cache else CACHE, budget=args.budget)  # fmt: skip
    counts = summary(outcomes)
    print(", ".join(f"{k} {v}" for k, v in counts.items()) + f"  ({time.monotonic() - started:.0f} s)")
    for m, o in zip(mutants, outcomes):
        if o.status in ("survived", "timeout"):
            print(f"  {o.status}: {m.id}  {m.description}")
    if not args.only and args.src.resolve() == (REPO / "reference").resolve():
        write_record(JSON_RECORD, mutants_record(mutants, outcomes, digest, args.scope, args.timeout))
        MD_RECORD.write_text(format_markdown(mutants, outcomes, args.src, args.scope), encoding="utf-8")
        print(f"wrote {JSON_RECORD} and {MD_RECORD}")
    return 0 if counts["survived"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
