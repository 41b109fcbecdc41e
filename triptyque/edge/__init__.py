"""The edge target's controller side: bundle, inventory, rendered vars, Ansible runs.

Pure builders (``render``, ``inventory``) stay apart from what has side effects
(``bundle`` writes archives, ``runner`` starts ansible-playbook); ``EdgeTarget`` in
``triptyque.targets.edge`` ties them together.
"""
