from avcaption_client.cli import main

main()
