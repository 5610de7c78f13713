from trimroute.cli import main

main()
