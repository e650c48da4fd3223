from intrascribe_cli.app import main

main()
