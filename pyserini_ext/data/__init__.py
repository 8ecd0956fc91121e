"""Corpora (streamed), topics and qrels in BEIR and Pyserini layouts; named datasets."""

from pyserini_ext.data.datasets import DATASETS, Dataset, DatasetNotFoundError, data_root, get_dataset
from pyserini_ext.data.readers import (
    DataFormatError,
    Document,
    Qrels,
    Topics,
    read_beir_corpus,
    read_beir_qrels,
    read_beir_queries,
    read_jsonl_collection,
    read_qrels,
    read_sgml_topics,
    read_topics,
    read_trec_qrels,
    read_tsv_topics,
)

__all__ = [
    "DATASETS", "Dataset", "DatasetNotFoundError", "data_root", "get_dataset",
    "DataFormatError", "Document", "Qrels", "Topics", "read_beir_corpus", "read_beir_qrels",
    "read_beir_queries", "read_jsonl_collection", "read_qrels", "read_sgml_topics", "read_topics",
    "read_trec_qrels", "read_tsv_topics",
]
