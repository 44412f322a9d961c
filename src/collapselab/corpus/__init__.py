"""Human data in: readers, the default corpus, tokenisation, and the theory models' data."""

from __future__ import annotations

from collapselab.corpus.numeric import NumericCorpus, build_numeric_corpus
from collapselab.corpus.readers import read_documents
from collapselab.corpus.sequences import TokenSequences
from collapselab.corpus.text_corpus import TextCorpus, attach_vault, build_text_corpus, sotu_documents


def seed_split(split_seed: int, seed: int) -> int:
    """The split seed of run seed ``seed`` when data are resampled per seed (``resample_data``)."""
    import numpy as np

    return int(np.random.SeedSequence([split_seed, seed, 0x5EED]).generate_state(1)[0])


def load_corpus(config, seed: int | None = None, *, pool_items: int | None = None):
    """The corpus an :class:`~collapselab.config.ExperimentConfig` names, split and ready: a
    TextCorpus, an ImageCorpus or a NumericCorpus. With ``config.resample_data`` and a run ``seed``,
    that seed's own split (:func:`seed_split`): its own generation-0 data, reserve and held-out set
    (text: its own held-out documents, hence its own vocabulary). ``pool_items``: unseen human
    items the image and theory corpora keep in reserve (default: what the config's policies take,
    ``config.human_pool_needed()``; a text corpus keeps every item it does not use)."""
    if seed is not None and getattr(config, "resample_data", False):
        config = config.model_copy(update={"split_seed": seed_split(config.split_seed, seed), "resample_data": False})

    pool_needed = config.human_pool_needed() if pool_items is None else pool_items
    if config.is_text:
        docs = sotu_documents() if config.corpus == "sotu" else read_documents(config.corpus, text_field=config.text_field)
        corpus = build_text_corpus(
            docs,
            name=config.corpus,
            n_train=config.train_items,
            holdout_fraction=config.holdout_fraction,
            max_holdout_items=config.holdout_items,
            split_seed=config.split_seed,
            max_len=config.model["max_len"],
        )
        if getattr(config, "facts", False):  # before the vault: its items are encoded in the final vocabulary
            from collapselab.corpus.facts import plant_facts

            plant_facts(corpus, config.split_seed)
        if config.vault:
            attach_vault(corpus, config.vault, config.vault_snapshot, split_seed=config.split_seed, max_len=config.model["max_len"])
        return corpus
    if config.is_image:
        from collapselab.corpus.images import build_image_corpus

        return build_image_corpus(config.corpus, n_train=config.train_items, n_pool=pool_needed,
                                  n_holdout=config.holdout_items, split_seed=config.split_seed)
    return build_numeric_corpus(
        config.corpus,
        n_train=config.train_items,
        dim=config.dim,
        n_pool=pool_needed,
        n_holdout=max(1000, config.train_items),
        split_seed=config.split_seed,
        family=config.family,
        n_types=config.model.get("n_types"),
    )


__all__ = ["TextCorpus", "NumericCorpus", "TokenSequences", "load_corpus", "read_documents", "seed_split"]
