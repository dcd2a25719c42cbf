"""The active-learning loop (docs/method.md §1): train, evaluate, query; saved after every round.

Every round's randomness is derived from (seed, round), so a run killed at any moment and
started again continues from its last finished round and writes the same rows (timings
aside) as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import zarr
from tqdm.auto import tqdm

from . import record
from .atomic import clean_stale, writable_dir
from .errors import CCMAError, StoreError
from .features import check_same_rows, feature_path, prototype_path, read_features, read_prototypes
from .parameters import check, check_device
from .splits import load_splits, split_path
from .strategies import QueryContext, get_strategy
from .strategies.base import PoolData, Strategy
# declared without torch: a finished run is recognised before torch is imported (in run())
from .settings import DEFAULT_STUDENT, DEFAULT_TEACHER, INITS, StudentConfig



@dataclass(frozen=True)
class RunConfig:
    data_dir: Path
    dataset: str
    strategy: str
    seed: int
    rounds: int = 20                 # T
    budget: int | None = None        # b; None means K
    init: str = "random"
    teacher_backbone: str = DEFAULT_TEACHER
    student_backbone: str = DEFAULT_STUDENT
    student: StudentConfig = field(default_factory=StudentConfig)
    params: dict = field(default_factory=dict)  # strategy parameters given by the user
    name: str | None = None          # run name; default from strategy, variant and preset


@dataclass
class RunData:
    pool: PoolData
    test_student: np.ndarray   # (N_test, d_S)
    test_labels: np.ndarray    # (N_test,)
    zero_shot: float           # the teacher's zero-shot test accuracy


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def pool_key(pool_rows: np.ndarray) -> str:
    """What identifies a pool (rows (N_pool,) int64 of the splits file) in records and caches."""
    return hashlib.sha256(pool_rows.tobytes()).hexdigest()[:16]


def train_student(*args, **kwargs):
    """``ccma.student.train_student``, imported on first use: torch takes seconds to import,
    and a finished run answers without it."""
    from .student import train_student as train

    return train(*args, **kwargs)


def load_run_data(data_dir, dataset: str, teacher_backbone: str, student_backbone: str) -> RunData:
    from .teacher import zero_shot_accuracy

    teacher = read_features(feature_path(data_dir, dataset, teacher_backbone))
    student = read_features(feature_path(data_dir, dataset, student_backbone))
    check_same_rows(teacher, student)
    protos = read_prototypes(prototype_path(data_dir, dataset, teacher_backbone))
    if protos.prototypes.shape[1] != teacher.dim:
        raise CCMAError(f"{protos.path}: prototypes have dimension {protos.prototypes.shape[1]} "
                        f"but the teacher features {teacher.path} have {teacher.dim}")
    k = len(protos.classnames)
    if teacher.n_classes != k:
        raise CCMAError(f"{teacher.path}: {teacher.n_classes} classes but {protos.path} names {k}")
    splits = load_splits(split_path(data_dir, dataset), len(teacher.train.labels), len(teacher.test.labels),
                         dataset)
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    pool = PoolData(
        student=f32(student.train.embeddings[splits.pool]),
        teacher=f32(teacher.train.embeddings[splits.pool]),
        labels=teacher.train.labels[splits.pool], rows=splits.pool,
        cal_student=f32(student.train.embeddings[splits.calibration]),
        cal_teacher=f32(teacher.train.embeddings[splits.calibration]),
        cal_labels=teacher.train.labels[splits.calibration],
        prototypes=protos.prototypes, n_classes=k, pool_key=pool_key(splits.pool),
    )
    test_teacher = teacher.test.embeddings[splits.test]
    return RunData(pool, f32(student.test.embeddings[splits.test]), teacher.test.labels[splits.test],
                   zero_shot_accuracy(test_teacher, teacher.test.labels[splits.test], protos.prototypes))


def run_name(strategy: str, params: dict) -> str:
    """``ccma``, ``ccma-V3``, ``ccma-reference-code``, ``ccma-V3-reference-code``; baselines as named."""
    parts = [strategy]
    if params.get("variant", "V1") != "V1":
        parts.append(params["variant"])
    if params.get("preset", "paper") != "paper":
        parts.append(params["preset"])
    return "-".join(parts)


def check_options(cfg: RunConfig, params: dict) -> None:
    """Every value that can be judged without the data, against ``ccma.parameters``: a bad one
    stops the run in one line naming the option before any data is read. ``params`` are the
    strategy's effective parameters (``Strategy.effective`` has checked their ranges)."""
    for name in ("seed", "rounds", "budget"):
        check(name, getattr(cfg, name))
    if cfg.init not in INITS:
        raise CCMAError(f"--init must be one of {INITS}, got {cfg.init!r}")
    for key, value in asdict(cfg.student).items():
        if key == "device":
            check_device(value)
        else:
            check(key, value)
    if params.get("calibration") == "coverage" and params.get("calibrate_on") == "subpool":
        raise CCMAError("--calibrate-on: coverage-targeted calibration needs labels; "
                        "use --calibrate-on calibration")


def validate(cfg: RunConfig, strategy: Strategy, params: dict, n_pool: int, n_classes: int,
             log=print) -> tuple[int, dict]:
    """Check values that only make sense against the data; returns the batch size b and the
    parameters, where a default that cannot hold for K classes (k_student 5 with K = 4) is
    clipped to K with a notice (a value the user gave is an error instead)."""
    budget = cfg.budget or n_classes
    if budget * cfg.rounds > n_pool:
        raise CCMAError(f"--budget: b={budget} x T={cfg.rounds} rounds needs {budget * cfg.rounds} "
                        f"labels but the pool has {n_pool}")
    if strategy.name == "ccma":
        params = dict(params)
        for key in ("k_teacher", "k_student"):
            if params[key] <= n_classes:
                continue
            if cfg.params.get(key) is not None:
                raise CCMAError(f"--{key.replace('_', '-')} must be in (0, K={n_classes}], got {params[key]}")
            log(f"--{key.replace('_', '-')}: the default {params[key]:g} exceeds the K={n_classes} "
                f"classes of {cfg.dataset}; using {n_classes}")
            params[key] = float(n_classes)
    return budget, params


def round_seed(seed: int, round_: int, stream: int) -> int:
    """The seed of one round's random stream (0: student training, 1: the query): derived from
    (seed, round) alone, so a resumed run draws exactly what an uninterrupted one drew."""
    return int(np.random.SeedSequence([seed, round_, stream]).generate_state(1)[0])


def _initial_batch(cfg: RunConfig, strategy: Strategy, ctx_args: dict, budget: int):
    rng = np.random.default_rng([cfg.seed, 0])
    if cfg.init == "random":
        return rng.choice(len(ctx_args["data"].labels), size=budget, replace=False), None
    if strategy.needs_student:
        return (rng.choice(len(ctx_args["data"].labels), size=budget, replace=False),
                "initial batch: strategy needs a trained student; drawn at random")
    sel = strategy.query(QueryContext(labeled=np.zeros(0, np.int64), student=None, round=0, **ctx_args),
                         budget, rng)
    return sel.indices, sel.fallback and f"initial batch: {sel.fallback}"


def run(cfg: RunConfig, progress: bool | None = None, log=print, overwrite: bool = False) -> Path:
    """Run (or resume) one AL run; returns the path of the finished run record.

    A finished record at the run's path made with other parameters stops the run before any
    training unless ``overwrite`` (it is then replaced when this run finishes); a partial
    record of other parameters is discarded with a notice.
    """
    strategy = get_strategy(cfg.strategy)
    try:
        params = strategy.effective(cfg.params)
    except CCMAError:
        raise
    except ValueError as exc:
        raise CCMAError(f"--strategy {cfg.strategy}: {exc}") from None
    check_options(cfg, params)
    done = _complete_before_reading(cfg, strategy, params)
    if done is not None:
        log(f"{done}: already complete with these parameters")
        return done
    data = load_run_data(cfg.data_dir, cfg.dataset, cfg.teacher_backbone, cfg.student_backbone)
    pool = data.pool
    budget, params, identity = _identity(cfg, strategy, params, len(pool.labels), pool.n_classes,
                                         pool.pool_key, log)
    name = cfg.name or run_name(cfg.strategy, params)
    final = record.run_path(cfg.data_dir, cfg.dataset, name, cfg.seed)
    partial = record.partial_path(final)
    params_hash = _hash(identity)

    for path in (final, partial):
        clean_stale(path)
    if _finished(final, params_hash, identity, overwrite, log):
        record.remove_stale_partial(final)
        log(f"{final}: already complete with these parameters")
        return final
    writable_dir(final.parent)  # a read-only data directory stops here, not after round 1
    from .geometry import pick_device  # torch: only now that there is work to do

    rows, labeled = [], None
    device = pick_device(cfg.student.device)
    ctx_args = dict(data=pool, params=params, seed=cfg.seed, device=device,
                    # = acquisition.clusters_dir, spelled out so that baseline runs do not
                    # depend on (and rerun with every edit of) CCMA's acquisition module
                    cache_dir=Path(cfg.data_dir) / "clusters" / cfg.dataset / cfg.teacher_backbone)
    init_fallback = None
    if partial.exists():
        try:
            rows, meta = record.read_rows(partial)
        except StoreError as exc:
            rows, meta = [], {}
            log(f"{partial}: {exc.problem}; discarded, the run starts again from round 1")
        if meta.get("params_hash") == params_hash:
            labeled = np.concatenate([np.asarray(meta["initial"], np.int64)] +
                                     [np.searchsorted(pool.rows, r["queried"]) for r in rows])
            init_fallback = meta.get("initial_fallback")
            log(f"{partial}: resuming after round {len(rows)}")
        elif rows:
            log(f"{partial}: an unfinished run with other parameters ({_differences(meta, identity)}); "
                "discarded, the run starts again from round 1")
            rows = []
    if labeled is None:
        initial, init_fallback = _initial_batch(cfg, strategy, ctx_args, budget)
        labeled = np.asarray(initial, dtype=np.int64)
    initial = labeled[:budget]
    meta = {"params_hash": params_hash, "identity": identity, "initial": initial.tolist(),
            "initial_fallback": init_fallback, "run_name": name}

    told = {r["fallback"] for r in rows}
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(range(len(rows) + 1, cfg.rounds + 1), desc=f"{cfg.dataset}/{name}/seed{cfg.seed}",
               unit="round", disable=not show, initial=len(rows), total=cfg.rounds)
    for t in bar:
        started = time.perf_counter()
        student = train_student(pool.student[labeled], pool.labels[labeled], pool.n_classes,
                                cfg.student, seed=round_seed(cfg.seed, t, 0))
        train_seconds = time.perf_counter() - started
        accuracy = float(np.mean(student.predict(data.test_student) == data.test_labels))
        ctx = QueryContext(labeled=labeled, student=student, round=t, **ctx_args)
        started = time.perf_counter()
        if t < cfg.rounds:
            sel = strategy.query(ctx, budget, np.random.default_rng(round_seed(cfg.seed, t, 1)))
            _check_selection(sel.indices, ctx, budget, strategy.name)
            queried, fallback, diagnostics = sel.indices, sel.fallback, sel.diagnostics
            query_seconds = time.perf_counter() - started
        else:
            queried, fallback, query_seconds = np.zeros(0, np.int64), None, None
            diagnostics = strategy.diagnose(ctx) if strategy.diagnose else {}
        if t == 1 and init_fallback:
            fallback = "; ".join(filter(None, [init_fallback, fallback]))
        if fallback and fallback not in told:  # once per distinct message, not every round
            told.add(fallback)
            log(f"{cfg.dataset}/{name}/seed{cfg.seed} round {t}: {fallback}")
        rows.append({
            "dataset": cfg.dataset, "strategy": name, "preset": params.get("preset"),
            "variant": params.get("variant"), "params_hash": params_hash, "seed": cfg.seed,
            "round": t, "n_labeled": len(labeled), "accuracy": accuracy,
            "train_seconds": train_seconds, "query_seconds": query_seconds,
            "queried": pool.rows[queried].tolist(), "teacher_zero_shot_accuracy": data.zero_shot,
            **{k: diagnostics.get(k) for k in record.DIAGNOSTIC_COLUMNS + record.CANDIDATE_COLUMNS}, "fallback": fallback,
        })
        record.write_rows(partial, rows, meta)
        labeled = np.concatenate([labeled, queried])
        bar.set_postfix(acc=f"{accuracy:.3f}", n=len(labeled))
    if not overwrite:  # a run of other parameters may have finished meanwhile
        _finished(final, params_hash, identity, overwrite, log)
    record.write_rows(final, rows, meta)
    partial.unlink(missing_ok=True)
    return final


def _identity(cfg: RunConfig, strategy: Strategy, params: dict, n_pool: int, n_classes: int,
              key: str, log) -> tuple[int, dict, dict]:
    """The batch size, the parameters (``validate``) and the identity a run record is hashed
    from: everything that changes its results. From the data it needs only the pool's size
    and key and K."""
    budget, params = validate(cfg, strategy, params, n_pool, n_classes, log)
    identity = {"dataset": cfg.dataset, "strategy": cfg.strategy, "params": params,
                "rounds": cfg.rounds, "budget": budget, "init": cfg.init, "seed": cfg.seed,
                "teacher": cfg.teacher_backbone, "student": cfg.student_backbone,
                "student_config": asdict(cfg.student), "pool": key}
    return budget, params, identity


def _complete_before_reading(cfg: RunConfig, strategy: Strategy, params: dict) -> Path | None:
    """The run's finished record when it was made with these parameters, told from the splits
    file and the prototype store's attributes (the pool and K) without reading the feature
    stores, so that a workflow re-asking for finished runs does not load them each time.
    None whenever that cannot be told this way: the full path then decides, and reports any
    problem in one line."""
    try:
        splits = load_splits(split_path(cfg.data_dir, cfg.dataset), dataset=cfg.dataset)
        protos = zarr.open_group(str(prototype_path(cfg.data_dir, cfg.dataset, cfg.teacher_backbone)),
                                 mode="r").attrs
        if protos.get("complete") is not True or not isinstance(protos.get("classnames"), list):
            return None
        _, params, identity = _identity(cfg, strategy, params, len(splits.pool), len(protos["classnames"]),
                                        pool_key(splits.pool), log=lambda _: None)
        final = record.run_path(cfg.data_dir, cfg.dataset, cfg.name or run_name(cfg.strategy, params), cfg.seed)
        if not final.exists() or record.read_rows(final)[1].get("params_hash") != _hash(identity):
            return None
    except Exception:  # noqa: BLE001 - any doubt (a missing or damaged file) takes the full path
        return None
    for path in (final, record.partial_path(final)):
        clean_stale(path)
    record.remove_stale_partial(final)
    return final


def _finished(final: Path, params_hash: str, identity: dict, overwrite: bool, log) -> bool:
    """Whether ``final`` is this run's finished record. One of other parameters (or an
    unreadable one) stops the run in one line unless ``overwrite``."""
    if not final.exists():
        return False
    try:
        meta = record.read_rows(final)[1]
    except StoreError as exc:
        if not overwrite:
            raise StoreError(final, f"{exc.problem}; rerun with --overwrite to redo the run") from None
        return False
    if meta.get("params_hash") == params_hash:
        return True
    what = f"finished with other parameters ({_differences(meta, identity)})"
    if not overwrite:
        raise StoreError(final, f"{what}; rerun with --overwrite to replace it, or give this run "
                                "another --name to keep both")
    log(f"{final}: {what}; replaced when this run finishes (--overwrite)")
    return False


def _differences(meta: dict, identity: dict, limit: int = 3) -> str:
    """'rounds 15 -> 5, params.kappa 3 -> 5': where a record's stored identity differs from
    ``identity`` (at most ``limit`` entries, then a count)."""
    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for key, v in d.items():
            out.update(flat(v, f"{prefix}{key}.") if isinstance(v, dict) else {f"{prefix}{key}": v})
        return out

    old, new = flat(meta.get("identity", {})), flat(json.loads(json.dumps(identity)))
    diff = [f"{k} {json.dumps(old.get(k))} -> {json.dumps(new.get(k))}"
            for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)]
    if not meta.get("identity") or not diff:
        return "which ones is not recorded"
    return ", ".join(diff[:limit]) + (f" and {len(diff) - limit} more" if len(diff) > limit else "")


def _check_selection(indices: np.ndarray, ctx: QueryContext, budget: int, name: str) -> None:
    """A strategy must return b distinct unlabelled positions; anything else is a bug."""
    if len(indices) != budget or len(np.unique(indices)) != budget \
            or not ctx.unlabeled_mask[indices].all():
        raise RuntimeError(f"strategy {name!r} returned an invalid batch "
                           f"({len(indices)} indices, {len(np.unique(indices))} distinct, budget {budget})")
