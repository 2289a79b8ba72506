"""The function table is the single source: everything derived from it agrees with it."""

import inspect
import math

import numpy as np
import pytest
from bitwise import requires_compiled

import fastact
from fastact import _codegen, _reference
from fastact._functions import BY_NAME, COMPOSITES, COMPUTE, ELEMENT, FUNCTIONS


@pytest.mark.parametrize("stub", sorted(_codegen.STUBS))
def test_committed_stubs_match_the_table(stub):
    # The stubs are what type checkers read; regenerate with `python fastact/_codegen.py`.
    path = _codegen.HERE / stub
    assert path.read_text() == _codegen.STUBS[stub](), f"{stub} is stale: regenerate it"


@pytest.mark.parametrize("spec", FUNCTIONS, ids=lambda f: f.name)
def test_public_function_has_the_table_signature(spec):
    func = getattr(fastact, spec.name)
    assert spec.name in fastact.__all__
    params = list(inspect.signature(func).parameters.values())
    names = [p.name for p in params]
    assert names == [*spec.operands, *(p.name for p in spec.parameters), "out"]
    defaults = {p.name: p.default for p in params}
    for p in spec.parameters:
        want = inspect.Parameter.empty if p.default is None else p.default
        assert defaults[p.name] == want or (math.isnan(want) and math.isnan(defaults[p.name]))
    assert defaults["out"] is None
    assert func.__name__ == spec.name and func.__module__ == "fastact"
    # The docstring states the rule and every parameter.
    assert func.__doc__ == spec.doc and "Notes" in spec.doc and "Raises" in spec.doc
    for name in (*spec.operands, *(p.name for p in spec.parameters), "out"):
        assert name in spec.doc, f"{spec.name}'s docstring does not describe {name}"


@pytest.mark.parametrize("spec", FUNCTIONS, ids=lambda f: f.name)
def test_every_function_has_a_reference_and_a_rule_shape(spec):
    reference = getattr(_reference, spec.name)
    n_args = len(spec.operands) + len(spec.parameters)
    assert len(inspect.signature(reference).parameters) == n_args
    assert spec.name in _reference.__all__
    assert all(p.rounding in (COMPUTE, ELEMENT) for p in spec.parameters)
    assert spec.rule_arity <= 2, "the loops pass at most two parameters"
    assert not (spec.fixed and spec.parameters), "a rule's parameters are fixed or given"


@requires_compiled
def test_compiled_modules_follow_the_table():
    from fastact import _kernels, ufunc

    assert list(ufunc.__all__) == [f.name for f in FUNCTIONS]
    for op, spec in enumerate(FUNCTIONS):
        u = getattr(ufunc, spec.name)
        assert isinstance(u, np.ufunc)
        assert u.nin == len(spec.operands) + (0 if spec.fixed else len(spec.parameters))
        assert ("int8" in _kernels.KERNEL_DTYPES[spec.name]) == spec.integers
        # The op numbers of the compiled code are the table's order: op k runs function k.
        x = np.linspace(-3, 3, 13)
        args = [x] * len(spec.operands)
        params = [p.default if p.default is not None else 0.5 for p in spec.parameters]
        entry = _kernels.binary if spec.is_backward else _kernels.unary
        padded = (*([] if spec.fixed else params), 0.0, 0.0)[:2]
        got = entry(op, *args, None, *padded)
        want = getattr(_reference, spec.name)(*args, *params)
        assert np.array_equal(got, want, equal_nan=True)
    assert _kernels.unary(len(FUNCTIONS), np.ones(3), None, 0.0, 0.0) is None


def test_ufunc_is_an_attribute_after_a_plain_import():
    # `import fastact; fastact.ufunc.relu` works without `from fastact import ufunc`.
    import subprocess
    import sys
    import tempfile

    code = "import fastact, numpy as np; print(fastact.ufunc.relu(np.float64(-1.0)))"
    # From a neutral folder: the repository root would import the uncompiled source tree.
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir()
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0.0"
    with pytest.raises(AttributeError, match="no_such_thing"):
        fastact.no_such_thing  # noqa: B018


def test_names_are_unique_and_lookup_is_complete():
    assert len(BY_NAME) == len(FUNCTIONS)
    assert all(BY_NAME[f.name] is f for f in FUNCTIONS)


@pytest.mark.parametrize("spec", COMPOSITES, ids=lambda c: c.name)
def test_composite_function_has_the_table_signature_and_docstring(spec):
    func = getattr(fastact, spec.name)
    assert spec.name in fastact.__all__
    params = inspect.signature(func).parameters
    declared = [p.split(":")[0].strip() for p in spec.parameters if p.strip() != "*"]
    assert list(params) == declared
    assert func.__doc__ == spec.doc and "Returns" in spec.doc and "Raises" in spec.doc


def test_every_composite_has_an_entry_for_the_generic_suites():
    # The fuzz, input, thread, fork and leak suites call the composites through
    # tests/composites.py: a composite without an entry there would escape them.
    from composites import COMPOSITE_CASES

    assert list(COMPOSITE_CASES) == [c.name for c in COMPOSITES]
    for spec in COMPOSITES:
        case = COMPOSITE_CASES[spec.name]
        names = list(inspect.signature(getattr(fastact, spec.name)).parameters)
        assert set(case.arrays) <= set(names), (spec.name, case.arrays, names)
        assert set(case.outputs) <= set(names) and set(case.sized) <= set(case.arrays)
        assert set(case.default_params) <= set(names)


def _calls_for(name: str, dtype: str, rng: np.random.Generator) -> list[tuple]:
    """Calls of ``name`` on a contiguous (4, 6, 5) array of ``dtype``: (function, kwargs)."""
    from bitwise import BY_NAME as ELEMENTWISE
    from bitwise import args_for, sample
    from composites import COMPOSITE_CASES, build_call

    shape = (4, 6, 5)
    if name in COMPOSITE_CASES:
        case = COMPOSITE_CASES[name]
        return [(case.call, (build_call(case, dtype, shape, rng),))]
    x = sample(dtype, math.prod(shape), rng).reshape(shape)
    if name in ELEMENTWISE:
        return [(getattr(fastact, name), args_for(name, x, x.copy(), 0.25))]
    return [(getattr(fastact, name), (x,))]  # dead_units, dead_fraction


@requires_compiled
def test_kernel_dtypes_are_what_the_loops_run(monkeypatch):
    # show_config's kernel_dtypes is a claim: with every function of the NumPy reference
    # made to raise, each listed function still runs on each listed dtype.
    from bitwise import BFLOAT16

    from fastact import _kernels

    def refuse(*args, **kwargs):
        raise AssertionError("the NumPy reference ran")

    for attr, value in list(vars(_reference).items()):
        if inspect.isfunction(value) and value.__module__ == _reference.__name__:
            monkeypatch.setattr(_reference, attr, refuse)
    listed = _kernels.KERNEL_DTYPES
    assert set(listed) == {*fastact.__all__} - {"__version__", *_NOT_COMPUTING}
    rng = np.random.default_rng(7)
    for name, dtypes in listed.items():
        for dtype in dtypes:
            if dtype == "bfloat16" and BFLOAT16 is None:
                continue  # ml_dtypes is a test dependency; the bfloat16 suites say so
            for call, args in _calls_for(name, BFLOAT16 if dtype == "bfloat16" else dtype, rng):
                with np.errstate(all="ignore"):
                    call(*args)


_NOT_COMPUTING = {"get_num_threads", "set_num_threads", "show_config", "threads"}
