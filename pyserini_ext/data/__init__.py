"""Corpora (streamed), topics and qrels in BEIR and Pyserini layouts; datasets by name, by local
folder, by dataset card, or through ir_datasets (:func:`resolve_dataset`)."""

from pyserini_ext.data.datasets import (
    DATASETS,
    Dataset,
    DatasetCardError,
    DatasetNotFoundError,
    Split,
    UnknownDatasetError,
    data_root,
    dataset_names,
    get_dataset,
    resolve_dataset,
    resolve_topic_set,
    topic_set_names,
)
from pyserini_ext.data.readers import (
    DataFormatError,
    Document,
    Qrels,
    Topics,
    read_beir_corpus,
    read_beir_qrels,
    read_beir_queries,
    read_corpus,
    read_jsonl_collection,
    read_qrels,
    read_sgml_topics,
    read_topics,
    read_trec_qrels,
    read_tsv_collection,
    read_tsv_topics,
)

__all__ = [
    "DATASETS", "Dataset", "DatasetCardError", "DatasetNotFoundError", "Split", "UnknownDatasetError", "data_root",
    "dataset_names", "get_dataset", "resolve_dataset", "resolve_topic_set", "topic_set_names",
    "DataFormatError", "Document", "Qrels", "Topics", "read_beir_corpus", "read_beir_qrels",
    "read_beir_queries", "read_corpus", "read_jsonl_collection", "read_qrels", "read_sgml_topics", "read_topics",
    "read_trec_qrels", "read_tsv_collection", "read_tsv_topics",
]
