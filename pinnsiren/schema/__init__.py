"""The problem schema below the families: value types, common groups, fields, expressions, boxes.

Nothing here knows a PDE family; :mod:`pinnsiren.problem` assembles the whole schema.
"""
