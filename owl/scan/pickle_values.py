"""The values the opcode walker keeps when a format sizes raw bytes by what a pickle says.

joblib writes an array's bytes right after the pickled NumpyArrayWrapper that gives its
shape and dtype; torch's legacy tar format writes storage bytes after pickles that give
their count and type. To skip exactly those bytes, the walker (pickle_ops) keeps, on its
symbolic stack and memo, constants (str, int, bool, None), small tuples and dicts, the
names a pickle imports and the objects it builds from them, with the states BUILD gives
them. Everything else, and any container past MAX_ITEMS, is OPAQUE: a reader that needs
an opaque value cannot tell the size, and says so (Unverified) instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Past this many items a tuple or dict is opaque: what a format sizes by is small (a
# shape, a dtype's fields), and it bounds the memory of tracking a large pickle.
MAX_ITEMS = 64

MARK = object()  # a MARK on the symbolic stack
OPAQUE = object()  # a value the walker does not know


@dataclass(frozen=True)
class Global:
    """A name the pickle imported, as the unpickler resolves it ("numpy.dtype")."""

    name: str


@dataclass(eq=False)
class Instance:
    """An object built from an imported name: called (REDUCE, INST, OBJ run __init__) or
    created by NEWOBJ, with the arguments it got and what BUILD then gave it."""

    factory: Global
    args: object
    called: bool
    state: object = None  # the last BUILD's state, as given
    # What pickle's default BUILD (no __setstate__) would have set; None once unknown.
    attributes: dict | None = field(default_factory=dict)
    builds: int = 0

    def build(self, state: object) -> None:
        """Record a BUILD, as pickle's load_build applies it to an object's __dict__."""
        self.state = state
        self.builds += 1
        if self.attributes is None:
            return
        slots: object = None
        if isinstance(state, tuple) and len(state) == 2:
            state, slots = state
        for part in (state, slots):
            if part is None:
                continue
            if isinstance(part, Dict) and part.complete:
                self.attributes.update(part.items)
            else:
                self.attributes = None
                return


@dataclass(eq=False)
class Dict:
    """A dict built by the pickle; `complete` is False once a key or the size is unknown."""

    items: dict = field(default_factory=dict)
    complete: bool = True

    def set(self, key: object, value: object) -> None:
        if not self.complete:
            return
        if not _hashable(key) or len(self.items) >= MAX_ITEMS:
            self.items.clear()  # forget what can no longer be used
            self.complete = False
            return
        self.items[key] = value


def _hashable(key: object) -> bool:
    if isinstance(key, tuple):
        return all(_hashable(item) for item in key)
    return key is None or isinstance(key, str | int | Global)


_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}
# Protocol 0's INT and LONG are text, which pickle parses with base 0 ("0x10", "010") and
# pickletools with base 10: their values are left opaque rather than trusted.
_BINARY_INTEGERS = frozenset({"BININT", "BININT1", "BININT2", "LONG1", "LONG4"})
_TUPLES = {"EMPTY_TUPLE": 0, "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}


def apply(stack: list[object], name: str, arg: object) -> bool:
    """Apply opcode `name` to the stack if it makes or combines a kept value; False leaves
    it to the walker's generic stack effect. `arg` is OPAQUE when it was stepped over."""
    if name in _CONSTANTS:
        stack.append(_CONSTANTS[name])
    elif name in _BINARY_INTEGERS:
        stack.append(arg)
    elif name in _TUPLES:
        count = _TUPLES[name]
        items = [pop(stack) for _ in range(count)][::-1]
        stack.append(tuple(items))
    elif name == "TUPLE":
        stack.append(_tuple(pop_to_mark(stack)))
    elif name == "EMPTY_DICT":
        stack.append(Dict())
    elif name == "DICT":
        stack.append(_set_items(Dict(), pop_to_mark(stack)))
    elif name == "SETITEM":
        value, key = pop(stack), pop(stack)
        target = top(stack)
        if isinstance(target, Dict):
            target.set(key, value)
    elif name == "SETITEMS":
        items = pop_to_mark(stack)
        target = top(stack)
        if isinstance(target, Dict):
            _set_items(target, items)
    elif name in ("REDUCE", "NEWOBJ"):
        args, factory = pop(stack), pop(stack)
        stack.append(_instance(factory, args, called=name == "REDUCE"))
    elif name == "NEWOBJ_EX":
        pop(stack)  # keyword arguments: no format this module serves writes them
        args, factory = pop(stack), pop(stack)
        stack.append(_instance(factory, args, called=False, known=False))
    elif name == "OBJ":
        factory, *args = pop_to_mark(stack) or [OPAQUE]
        stack.append(_instance(factory, _tuple(args), called=True))
    else:
        return False
    return True


def instance_of_inst(name: str, stack: list[object]) -> Instance:
    """INST module name: a call of the imported name with the items above the MARK."""
    return Instance(Global(name), _tuple(pop_to_mark(stack)), called=True)


def _instance(factory: object, args: object, *, called: bool, known: bool = True) -> object:
    if not isinstance(factory, Global):
        return OPAQUE
    return Instance(factory, args if known else OPAQUE, called=called)


def _tuple(items: list[object]) -> object:
    return tuple(items) if len(items) <= MAX_ITEMS else OPAQUE


def _set_items(target: Dict, items: list[object]) -> Dict:
    if len(items) % 2:
        target.items.clear()
        target.complete = False
    for index in range(0, len(items) - 1, 2):
        target.set(items[index], items[index + 1])
    return target


def top(stack: list[object]) -> object:
    """The value on top, as far as the unpickler's stack above the last MARK has one."""
    return stack[-1] if stack and stack[-1] is not MARK else OPAQUE


def pop(stack: list[object]) -> object:
    return stack.pop() if stack and stack[-1] is not MARK else OPAQUE


def pop_to_mark(stack: list[object]) -> list[object]:
    """The items above the last MARK, in order, with the MARK removed."""
    items: list[object] = []
    while stack:
        item = stack.pop()
        if item is MARK:
            break
        items.append(item)
    return items[::-1]
