"""What iBOT optimises: the self-distillation loss on [CLS] and masked patches (`loss`), the blockwise
masks (`masks`) and the cosine schedules of lr, weight decay, momentum and temperatures (`schedules`).
Public names are in `pretrain/__init__.py`."""
