"""Helpdesk bridges: one provider contract (`bridges.base`), one subpackage per
provider. Nothing here imports `bot` or aiogram."""
