"""The Igor-P2P testnet harness: event histories, the offline checker, the HTML report,
nemesis schedules and scenarios.

Everything here that needs no running node is pure Python over files and data:
:mod:`testnet.history` reads the nodes' ``history.jsonl`` files, :mod:`testnet.checker`
verifies the safety and liveness invariants, :mod:`testnet.report` renders one HTML page,
:mod:`testnet.nemesis` and :mod:`testnet.scenario` describe fault schedules.
"""
