from tests.lambdas.doubles import aws, handlers  # noqa: F401  (the fixtures, shared by this folder's tests)
