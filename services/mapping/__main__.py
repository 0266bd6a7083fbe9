from services.mapping.cli import main

main()
