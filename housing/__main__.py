from housing.cli import app

app()
