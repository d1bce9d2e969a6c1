from tests.lambdas.doubles import aws, handlers  # noqa: F401  (the fixture, shared by this folder's tests)
