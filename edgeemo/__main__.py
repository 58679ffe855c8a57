from edgeemo.cli import main

raise SystemExit(main())
