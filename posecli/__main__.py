from posecli.cli.app import main

main()
