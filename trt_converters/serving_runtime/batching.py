"""One execute() call's requests answered in groups: requests whose non-batch shapes agree run as one
call (concatenated along the batch dimension) and the outputs are split back per request.

A request that cannot be read, or whose group fails and then fails alone, gets an error response (a
RequestError: INVALID_ARG, HTTP 400; any other exception: INTERNAL, HTTP 500); the other requests of the call
are still answered.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .triton_io import RequestError, exception_response


def answer_in_groups(requests, read: Callable, run: Callable, respond: Callable, *, batched: bool,
                     model_name: str) -> list:
    """One response per request, in order.

    `read(request)` gives {input name: array} (RequestError for a bad request), `run(feeds)` the output
    arrays in config order, `respond(outputs)` the InferenceResponse. Unbatched models (`batched` False)
    run each request alone.
    """
    responses = [None] * len(requests)
    groups: dict = {}
    for index, request in enumerate(requests):
        try:
            feeds = read(request)
        except RequestError as exc:
            responses[index] = exception_response(exc, f"{model_name}: ")
            continue
        key = tuple((n, a.shape[1:], a.dtype.str) for n, a in feeds.items()) if batched else ("request", index)
        groups.setdefault(key, []).append((index, feeds))
    for members in groups.values():
        try:
            answered = _run_group(members, run, respond)
        except Exception:
            answered = {}
            for index, feeds in members:  # one bad request must not fail the others
                try:
                    answered.update(_run_group([(index, feeds)], run, respond))
                except Exception as exc:  # answer this request with its error, keep serving
                    answered[index] = exception_response(exc, f"{model_name}: ")
        for index, response in answered.items():
            responses[index] = response
    return responses


def _run_group(members, run: Callable, respond: Callable) -> dict:
    """Run (index, feeds) pairs with equal non-batch shapes as one call; index -> response."""
    if len(members) == 1:
        index, feeds = members[0]
        return {index: respond(run(feeds))}
    sizes = [next(iter(feeds.values())).shape[0] for _, feeds in members]
    names = list(members[0][1])
    stacked = {n: np.concatenate([feeds[n] for _, feeds in members], axis=0) for n in names}
    results = run(stacked)
    if any(np.ndim(r) == 0 or np.shape(r)[0] != sum(sizes) for r in results):
        raise RuntimeError("outputs are not batched along dimension 0")  # the model's fault; run them alone
    bounds = np.cumsum(sizes)[:-1]
    per_output = [np.split(np.asarray(r), bounds, axis=0) for r in results]
    return {index: respond([parts[k] for parts in per_output]) for k, (index, _) in enumerate(members)}
